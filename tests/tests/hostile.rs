//! Hostile clients: a client that stalls or opens many connections costs
//! its own requests, never everyone's.

use std::time::Duration;

use ostore::auth::Principal;
use ostore_tests::{Serves, Setup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The time a test waits for an answer that must come; well past the
/// limits these hosts are given.
const PATIENCE: Duration = Duration::from_secs(20);

fn setup() -> Setup {
    Setup::new().app("hostile", &[("/store/...", "flow", "store-flow")])
}

/// Sends `head` and `body` on a new connection and reads until the server
/// closes it (or `PATIENCE` runs out, which fails the test).
async fn exchange(host: &impl Serves, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(host.addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server answered and closed the connection in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether a new client is served within five seconds (the host notices
/// closed connections within moments).
async fn served_again(host: &impl Serves) -> bool {
    for _ in 0..50 {
        let answer = exchange(
            host,
            "GET /store HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            b"",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_body_that_stalls_is_answered_408_at_the_body_timeout() {
    let setup = setup();
    let admin = setup.credential(Principal::Admin, &[]);
    let host = setup
        .start_with(|c| c.connections.body_timeout = Duration::from_secs(1))
        .await;
    let token = host.token(&admin).await;
    let key = "/api/v1/organizations/default/environments/hostile/stores/\
               _defaultUserObjectStore/partitions/P/keys/k";
    // 1,000 bytes announced, one sent: the token endpoint (no credential
    // needed) and a key write alike.
    for (method, path, auth) in [
        ("POST", ostore::api::TOKEN_PATH, String::new()),
        ("PUT", key, format!("authorization: Bearer {token}\r\n")),
    ] {
        let started = std::time::Instant::now();
        let answer = exchange(
            &host,
            &format!(
                "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\n\
                 content-length: 1000\r\n\r\n"
            ),
            b"{",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("did not arrive within 1 s"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(10), "{path}");
    }
    // The host serves everyone else meanwhile and after.
    assert_eq!(host.get("/store/nothing").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_with_503_and_served_once_one_closes() {
    let setup = setup();
    let host = setup
        .start_with(|c| c.connections.max_connections = 2)
        .await;
    let idle = [
        TcpStream::connect(host.addr).await.unwrap(),
        TcpStream::connect(host.addr).await.unwrap(),
    ];
    // The host takes both before the next is tried.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = exchange(&host, "GET /store HTTP/1.1\r\nhost: x\r\n\r\n", b"").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("too many connections"), "{refused}");

    drop(idle);
    let served = served_again(&host).await;
    assert!(served, "a free slot is served again");
}

/// Through `ostore up` under a limit of 128 open files, as an operator's
/// `ulimit -n` sets it: a flood of idle connections gets 503s instead of
/// leaving everyone unanswered, and the log does not fill up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_files_a_flood_of_connections_is_refused_and_the_log_stays_quiet() {
    let setup = setup();
    let args = setup.up_args(&["--max-connections", "10000"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let host =
        ostore_tests::OstoreProcess::start_under(&["prlimit", "--nofile=128:128"], &args, &[]);
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(host.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = exchange(&host, "GET /store HTTP/1.1\r\nhost: x\r\n\r\n", b"").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = host.stderr();
    assert!(
        log.contains("serving at most") && log.contains("connections per listener"),
        "{log}"
    );
    assert!(
        log.matches("accept").count() <= 1,
        "accept failures are logged once in a while, not per try:\n{log}"
    );

    drop(idle);
    let served = served_again(&host).await;
    assert!(served, "once the flood is gone, clients are served again");
}

/// Through `ostore up`, whose environment asks for backtraces: a request
/// whose body breaks off mid-way is answered without anything of the
/// host's insides (its stack, its source paths).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_carry_no_host_backtrace_whatever_the_environment() {
    let setup = setup();
    let args = setup.up_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let host = ostore_tests::OstoreProcess::start_with_env(
        &args,
        &[("RUST_BACKTRACE", "1"), ("RUST_LIB_BACKTRACE", "1")],
    );
    // A chunk size that is not hexadecimal: the guest's read of the body
    // fails, and it answers with the reason the host gave it.
    let answer = exchange(
        &host,
        "POST /store HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        b"zz\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    for inside in ["backtrace", ".rs:", "index.crates.io", "/root/"] {
        assert!(!answer.contains(inside), "{inside:?} in:\n{answer}");
    }
}

/// A request with its key path, announcing 1,000 bytes of body.
fn stalled_put(token: &str) -> String {
    format!(
        "PUT /api/v1/organizations/default/environments/hostile/stores/_defaultUserObjectStore/\
         partitions/P/keys/k HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_total_deadline_gets_503() {
    let setup = setup();
    let admin = setup.credential(Principal::Admin, &[]);
    // The body timeout alone would answer after 60 s.
    let host = setup
        .start_with(|c| {
            c.connections.body_timeout = Duration::from_secs(60);
            c.connections.request_deadline = Duration::from_secs(1);
        })
        .await;
    let token = host.token(&admin).await;
    let answer = exchange(&host, &stalled_put(&token), b"{").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("not answered within 1 s"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_answers_a_request_whose_body_stalls_at_once() {
    let setup = setup();
    let admin = setup.credential(Principal::Admin, &[]);
    // Both the body timeout and the shutdown's grace are long.
    let host = setup
        .start_with(|c| {
            c.connections.body_timeout = Duration::from_secs(60);
            c.connections.shutdown_grace = Duration::from_secs(60);
        })
        .await;
    let token = host.token(&admin).await;
    let mut stream = TcpStream::connect(host.addr).await.unwrap();
    stream
        .write_all(stalled_put(&token).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{").await.unwrap();
    // The request is in the host's hands before it is told to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = tokio::spawn(host.stop());
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the stalled request was answered, and its connection closed, in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("the server is stopping"), "{answer}");
    tokio::time::timeout(PATIENCE, stopped)
        .await
        .expect("the host stopped in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_responses_is_disconnected() {
    let host = setup()
        .start_with(|c| c.connections.write_timeout = Duration::from_secs(1))
        .await;
    // Thousands of pipelined requests for the 45 kB OpenAPI document, far
    // more than socket buffers hold, and nothing read.
    const REQUESTS: usize = 5_000;
    let stream = TcpStream::connect(host.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let request = b"GET /api/v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n";
        for _ in 0..REQUESTS {
            if writer.write_all(request).await.is_err() {
                break;
            }
        }
        writer
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Now read: the host has given up on this client, so the answers end
    // (with an end of stream or a reset) before the last one.
    let mut answers = Vec::new();
    let mut buf = vec![0; 1 << 16];
    let read_all = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answers.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("the host closed the connection");
    let answered = answers
        .windows(b"HTTP/1.1 200".len())
        .filter(|w| *w == b"HTTP/1.1 200")
        .count();
    assert!(answered < REQUESTS, "{answered} of {REQUESTS} answered");
    sending.abort();
    // The host serves others as before.
    assert_eq!(host.get("/api/v1/openapi.json").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_budget_large_requests_get_503_until_memory_is_free() {
    let setup = setup();
    let admin = setup.credential(Principal::Admin, &[]);
    // Room for two 3 MiB bodies in flight (each is charged four copies).
    let host = setup.start_with(|c| c.memory_budget = Some(24 << 20)).await;
    let token = host.token(&admin).await;
    let key = "/api/v1/organizations/default/environments/hostile/stores/\
               _defaultUserObjectStore/partitions/P/keys/big";
    let value = "a".repeat(3 << 20);
    let body = format!(r#"{{"valueType":"STRING","stringValue":"{value}"}}"#);
    let head = format!(
        "PUT {key} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // Two clients start sending large bodies, slowly.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(host.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..1000]).await.unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third large request is refused, and told when to retry; the host
    // reads its body to the end, so a client that sends it all before
    // reading gets the answer.
    let closing = head.replace("host: x\r\n", "host: x\r\nconnection: close\r\n");
    let refused = exchange(&host, &closing, body.as_bytes()).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{}", &refused[..200]);
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(refused.contains("no memory to spare"), "{refused}");
    // Small requests are served as before.
    let small = host
        .call(&token, "GET", "/api/v1/openapi.json", String::new())
        .await;
    assert_eq!(small.status, 200);
    // Once the slow clients give up, their memory is free again.
    drop(slow);
    let mut status = 0;
    for _ in 0..50 {
        status = host.call(&token, "PUT", key, body.clone()).await.status;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_grow_past_the_memory_budget() {
    // Less than a Rust guest's first memory: no instance can start.
    let host = setup()
        .start_with(|c| c.memory_budget = Some(64 << 10))
        .await;
    let answer = host.get("/store/anything").await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(host.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_or_oversized_request_heads_are_refused() {
    let host = setup().start().await;
    let path = ostore::api::TOKEN_PATH;
    // Smuggling attempts: a body length given two ways, or twice.
    for lengths in [
        "content-length: 4\r\ntransfer-encoding: chunked\r\n",
        "content-length: 4\r\ncontent-length: 40\r\n",
    ] {
        let answer = exchange(
            &host,
            &format!("POST {path} HTTP/1.1\r\nhost: x\r\n{lengths}connection: close\r\n\r\n"),
            b"0\r\n\r\nGET /admin/ HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{lengths}: {answer}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    }
    // A head larger than the server reads.
    let huge = format!(
        "GET /store/x HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = exchange(&host, &huge, b"").await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(host.is_running());
}
