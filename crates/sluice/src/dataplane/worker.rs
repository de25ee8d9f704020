//! Workers: one OS thread per core, each running its own single-threaded async runtime with its
//! own listening sockets and its own connection pools to origins, the way nginx runs worker
//! processes. A request is read, routed, forwarded and answered on one thread, with no
//! cross-thread wake-ups on the request path.

use std::cell::Cell;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::entrypoint::EntryPoint;
use super::request::Shared;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Index of the worker running on this thread (0 outside workers).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Number of workers: `SLUICE_WORKERS` when set, else one per available core.
pub fn count() -> usize {
    std::env::var("SLUICE_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// Starts worker `index` serving `entry_points` until `shutdown` turns true and they drained.
pub fn spawn(
    index: usize,
    entry_points: Vec<EntryPoint>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("sluice-worker-{index}"))
        .spawn(move || {
            INDEX.with(|i| i.set(index));
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(worker = index, %error, "cannot start the worker's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let serving: Vec<_> = entry_points
                    .into_iter()
                    .map(|ep| tokio::spawn(ep.serve(shared.clone(), shutdown.clone())))
                    .collect();
                for task in serving {
                    let _ = task.await;
                }
            });
        })
}
