//! Sticky sessions at the edges: weight-0 children and sticky targets that go down.

mod common;

use std::time::{Duration, Instant};

use common::{origins, render, send, Sluice};

#[tokio::test(flavor = "multi_thread")]
async fn weight_zero_children_are_reached_only_by_cookie() {
    let (_o, vars) = origins(&["a", "b", "c"]).await;
    let sluice = Sluice::start(&[("sticky.yaml", render("sticky.yaml", &vars))], &[]).await;
    let client = common::client();
    for _ in 0..1000 {
        let answer = send(&client, "GET", &sluice.url("/zero"), &[], "")
            .await
            .expect("request");
        assert_eq!(
            answer.origin(),
            "a",
            "a new client never lands on the weight-0 child"
        );
    }
    // The cookie value of app-b is its name's hash; the raw name is accepted too.
    for _ in 0..10 {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/zero"),
            &[("Cookie", "pick=app-b")],
            "",
        )
        .await
        .expect("request");
        assert_eq!(answer.origin(), "b");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_server_that_goes_down_is_replaced_with_a_new_cookie() {
    let (mut o, vars) = origins(&["a", "b", "c"]).await;
    let sluice = Sluice::start(&[("sticky.yaml", render("sticky.yaml", &vars))], &[]).await;
    let client = common::client();
    // Find the cookie of server c.
    let mut cookie = None;
    for _ in 0..4 {
        let answer = send(&client, "GET", &sluice.url("/pinned"), &[], "")
            .await
            .expect("request");
        if answer.origin() == "c" {
            cookie = answer
                .headers
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(str::to_owned);
        }
    }
    let cookie = cookie.expect("c answered once in four requests");
    for _ in 0..20 {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/pinned"),
            &[("Cookie", &cookie)],
            "",
        )
        .await
        .expect("request");
        assert_eq!(answer.origin(), "c");
    }
    // Kill c: once its health check fails, the pinned client moves to a and gets a new cookie.
    drop(o.remove(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/pinned"),
            &[("Cookie", &cookie)],
            "",
        )
        .await
        .expect("request");
        if answer.status == 200 && answer.origin() == "a" {
            let set = answer
                .headers
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                set.starts_with("srv=") && !set.starts_with(&cookie),
                "{set}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pinned client never moved: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
