//! A misbehaving guest costs its own request, never the host.

use std::time::{Duration, Instant};

use ostore_tests::{Host, guest, write_manifest};

fn start(dir: &std::path::Path) -> Host {
    let misbehave = guest("misbehave");
    let hello = guest("hello");
    let manifest = write_manifest(
        dir,
        "sandbox",
        &[
            ("/misbehave/...", "misbehave", &misbehave),
            ("/hello", "hello", &hello),
        ],
    );
    let data = dir.join("data");
    Host::start(&[
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--request-timeout",
        "2",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_guest_gets_a_5xx_at_its_deadline_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = start(dir.path());

    let started = Instant::now();
    let looping = {
        let addr = host.addr;
        tokio::spawn(async move {
            let r = ostore_tests::request(addr, "GET", "/misbehave/loop", Default::default()).await;
            (r, started.elapsed())
        })
    };
    // While one instance spins, others are served normally.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let r = host.get("/hello").await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello, world"));
    }
    let (r, took) = looping.await.unwrap();
    assert!((500..600).contains(&r.status), "status {}", r.status);
    assert!(
        took >= Duration::from_secs(2),
        "interrupted after {took:?}, before the deadline"
    );
    assert!(
        took < Duration::from_secs(10),
        "interrupted only after {took:?}"
    );

    assert_eq!(host.get("/misbehave/ok").await.status, 200);
    assert!(host.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_gets_a_500_and_the_host_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = start(dir.path());
    for _ in 0..3 {
        let r = host.get("/misbehave/trap").await;
        assert_eq!(r.status, 500);
        let ok = host.get("/misbehave/ok").await;
        assert_eq!((ok.status, ok.text().as_str()), (200, "ok"));
    }
    assert!(host.is_running());
    let unrouted = host.get("/nowhere").await;
    assert_eq!(unrouted.status, 404);
}
