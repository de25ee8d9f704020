//! A body read to its end and kept so it can be sent (again): the first bytes in memory, the
//! rest in an unnamed temporary file, as oxy's buffer does past its memory threshold.
//!
//! The file has no name (it is unlinked from the start), so the disk space goes back to the
//! system as soon as the last reader of the body is dropped, even if Sluice is killed.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::dataplane::body::{BoxError, ProxyBody};

/// Bytes read from the file per chunk sent on.
const READ_CHUNK: u64 = 128 * 1024;

/// Why a body could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The body itself failed (the peer went away, a malformed chunk, ...).
    #[error("reading the body: {0}")]
    Body(BoxError),
    /// The temporary file could not be created or written.
    #[error("spilling the body to disk: {0}")]
    Disk(#[from] io::Error),
}

/// How storing a body ended.
pub enum Stored {
    /// The whole body.
    Whole(StoredBody),
    /// More than the maximum; what was read is discarded.
    TooLarge,
}

/// A complete body, replayable any number of times.
#[derive(Debug, Clone)]
pub struct StoredBody {
    memory: Vec<Bytes>,
    spilled: Option<Arc<File>>,
    spilled_len: u64,
    len: u64,
}

impl StoredBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body had no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether part of the body is on disk.
    pub fn spilled(&self) -> bool {
        self.spilled.is_some()
    }

    /// A fresh body sending every byte from the start; readers are independent of each other.
    pub fn body(&self) -> ProxyBody {
        StoredReader {
            memory: self.memory.iter().cloned().collect(),
            file: self.spilled.clone(),
            offset: 0,
            end: self.spilled_len,
            pending: None,
        }
        .boxed()
    }
}

/// Reads `body` to its end, keeping up to `memory` bytes in memory and the rest on disk;
/// stops with [`Stored::TooLarge`] once more than `max` bytes arrived (`0`: no maximum).
/// Trailers are dropped.
pub async fn store(mut body: ProxyBody, memory: u64, max: u64) -> Result<Stored, StoreError> {
    let mut chunks = Vec::new();
    let mut in_memory = 0u64;
    let mut file: Option<tokio::fs::File> = None;
    let mut spilled_len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame.map_err(StoreError::Body)?.into_data() else {
            continue;
        };
        if max > 0 && in_memory + spilled_len + data.len() as u64 > max {
            return Ok(Stored::TooLarge);
        }
        let room = memory.saturating_sub(in_memory).min(data.len() as u64) as usize;
        if room > 0 {
            let head = data.split_to(room);
            in_memory += head.len() as u64;
            chunks.push(head);
        }
        if data.is_empty() {
            continue;
        }
        let spill = match file.as_mut() {
            Some(spill) => spill,
            None => {
                let created = tokio::task::spawn_blocking(tempfile::tempfile)
                    .await
                    .map_err(io::Error::other)??;
                file.insert(tokio::fs::File::from_std(created))
            }
        };
        spill.write_all(&data).await?;
        spilled_len += data.len() as u64;
    }
    let spilled = match file {
        Some(mut spill) => {
            spill.flush().await?;
            Some(Arc::new(spill.into_std().await))
        }
        None => None,
    };
    Ok(Stored::Whole(StoredBody {
        memory: chunks,
        spilled,
        spilled_len,
        len: in_memory + spilled_len,
    }))
}

/// Sends the in-memory chunks, then the file's bytes, read a chunk at a time off the runtime's
/// threads.
struct StoredReader {
    memory: VecDeque<Bytes>,
    file: Option<Arc<File>>,
    /// Position in the file of the next read.
    offset: u64,
    end: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl StoredReader {
    fn remaining(&self) -> u64 {
        self.memory.iter().map(|c| c.len() as u64).sum::<u64>() + (self.end - self.offset)
    }
}

impl Body for StoredReader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.memory.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.offset >= self.end {
            return Poll::Ready(None);
        }
        let Some(file) = self.file.clone() else {
            return Poll::Ready(None);
        };
        let offset = self.offset;
        let want = READ_CHUNK.min(self.end - offset) as usize;
        let pending = self.pending.get_or_insert_with(|| {
            tokio::task::spawn_blocking(move || {
                let mut buffer = vec![0; want];
                let read = file.read_at(&mut buffer, offset)?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the spilled body is shorter than written",
                    ));
                }
                buffer.truncate(read);
                Ok(Bytes::from(buffer))
            })
        });
        let result = ready!(Pin::new(pending).poll(cx));
        self.pending = None;
        match result {
            Ok(Ok(chunk)) => {
                self.offset += chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Ok(Err(error)) => Poll::Ready(Some(Err(error.into()))),
            Err(error) => Poll::Ready(Some(Err(error.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.memory.is_empty() && self.offset >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::body::boxed;

    fn chunked(parts: &[&'static [u8]]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    async fn collect(body: ProxyBody) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn memory_then_disk_and_replayable() {
        let Stored::Whole(stored) = store(chunked(&[b"abc", b"defg", b"hij"]), 5, 0)
            .await
            .unwrap()
        else {
            panic!("no maximum");
        };
        assert_eq!(stored.len(), 10);
        assert!(stored.spilled());
        assert_eq!(
            stored.spilled_len, 5,
            "the chunk crossing the threshold is split"
        );
        let body = stored.body();
        assert_eq!(body.size_hint().exact(), Some(10));
        assert_eq!(collect(body).await, b"abcdefghij");
        assert_eq!(collect(stored.body()).await, b"abcdefghij", "read again");
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_and_maxima_stop_reading() {
        let Stored::Whole(stored) = store(chunked(&[b"abc"]), 5, 3).await.unwrap() else {
            panic!("exactly the maximum is allowed");
        };
        assert!(!stored.spilled());
        assert_eq!(collect(stored.body()).await, b"abc");
        assert!(matches!(
            store(chunked(&[b"abc", b"d"]), 5, 3).await.unwrap(),
            Stored::TooLarge
        ));
        let Stored::Whole(empty) = store(chunked(&[]), 5, 0).await.unwrap() else {
            panic!("empty");
        };
        assert!(empty.is_empty() && empty.body().is_end_stream());
    }

    #[tokio::test]
    async fn a_large_spill_reads_back_in_chunks() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let body = boxed(http_body_util::Full::new(Bytes::from(data.clone())));
        let Stored::Whole(stored) = store(body, 1000, 0).await.unwrap() else {
            panic!("no maximum");
        };
        let mut reader = stored.body();
        let mut frames = 0;
        let mut got = Vec::new();
        while let Some(frame) = reader.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            frames += 1;
        }
        assert_eq!(got, data);
        assert!(frames > 2, "read back in bounded chunks, got {frames}");
    }
}
