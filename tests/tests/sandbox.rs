//! A misbehaving guest costs its own request, never the host.

use std::time::Duration;

use ostore::host::Sandbox;
use ostore::runtime::SandboxConfig;
use ostore_tests::{Serves, Setup, TestHost, guest};

fn sandbox() -> Setup {
    Setup::new().app(
        "sandbox",
        &[
            ("/misbehave/...", "misbehave", "misbehave"),
            ("/hello", "hello", "hello"),
        ],
    )
}

/// A host of `setup` whose requests may take `timeout`.
async fn start(setup: &Setup, timeout: Duration) -> TestHost {
    setup
        .start_with(|c| {
            c.sandbox = Sandbox::New(SandboxConfig {
                request_timeout: timeout,
                ..SandboxConfig::default()
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_guests_get_a_5xx_at_their_deadline_while_others_are_served() {
    let setup = sandbox();
    let host = start(&setup, Duration::from_secs(10)).await;

    // More spinning guests than the host has worker threads (2 cores).
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let addr = host.addr;
            tokio::spawn(async move {
                ostore_tests::request(addr, "GET", "/misbehave/loop", Default::default()).await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // While they spin, other requests are answered: every one of these
    // completes before any spinning guest has been stopped.
    for _ in 0..20 {
        let r = host.get("/hello").await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello, world"));
    }
    assert!(
        loops.iter().all(|l| !l.is_finished()),
        "the spinning guests were stopped before their deadline"
    );
    for l in loops {
        let r = l.await.unwrap();
        assert_eq!(r.status, 504, "{}", r.text());
    }
    assert_eq!(host.get("/misbehave/ok").await.status, 200);
    assert!(host.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_gets_a_500_and_the_host_stays_up() {
    let setup = sandbox();
    let host = start(&setup, Duration::from_secs(2)).await;
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

/// Through `ostore up`: SIGTERM stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_answers_the_requests_in_flight() {
    let setup = sandbox();
    let host = setup.start_process(&["--request-timeout", "10"]);
    let addr = host.addr;
    let slow = tokio::spawn(async move {
        ostore_tests::request(addr, "GET", "/misbehave/slow", Default::default()).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // SIGTERM while the request runs; `stop` waits for a clean exit.
    tokio::task::spawn_blocking(move || host.stop())
        .await
        .unwrap();
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow ok"));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// A one-answer-per-connection HTTP server on loopback that replies `body`.
async fn upstream(body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the test makes a handful of requests.
        for _ in 0..16 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_http_goes_only_where_the_manifest_allows() {
    let allowed = upstream("from the allowed upstream").await;
    let other = upstream("from another upstream").await;
    let setup = Setup::new();
    let manifest = setup.path().join("outbound.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"outbound\"\n\
             [[trigger.http]]\nroute = \"/misbehave/...\"\ncomponent = \"m\"\n\
             [component.m]\nsource = {:?}\nallowed_outbound_hosts = [\"http://{allowed}\"]\n",
            guest("misbehave").display().to_string()
        ),
    )
    .unwrap();
    let setup = setup.manifest(manifest);
    let host = setup.start().await;
    let r = host.get(&format!("/misbehave/fetch?to={allowed}")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "from the allowed upstream")
    );
    let r = host.get(&format!("/misbehave/fetch?to={other}")).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());

    // Without allowed_outbound_hosts a component reaches nothing.
    let closed_setup = sandbox();
    let closed = start(&closed_setup, Duration::from_secs(10)).await;
    let r = closed.get(&format!("/misbehave/fetch?to={allowed}")).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
}
