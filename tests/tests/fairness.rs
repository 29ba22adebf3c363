//! One application cannot make the others unusable: its instances are
//! capped, and its failures do not flood the log.

use std::time::Duration;

use ostore::host::Sandbox;
use ostore::runtime::SandboxConfig;
use ostore_tests::{Serves, Setup, host_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_at_its_instance_cap_gets_503_while_another_is_served() {
    let setup = Setup::new()
        .app("busy", &[("/misbehave/...", "spinner", "misbehave")])
        .app("calm", &[("/hello", "hello", "hello")]);
    let host = setup
        .start_with(|c| {
            c.sandbox = Sandbox::New(SandboxConfig {
                request_timeout: Duration::from_secs(3),
                max_instances_per_app: 2,
                ..SandboxConfig::default()
            })
        })
        .await;
    // Both of the application's instances spin until their deadline.
    let spinning: Vec<_> = (0..2)
        .map(|_| {
            let addr = host.addr;
            tokio::spawn(async move {
                ostore_tests::request(addr, "GET", "/misbehave/loop", Default::default()).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Its next request is refused at once, and told when to come back...
    let refused = host.get("/misbehave/ok").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused
            .text()
            .contains("application `busy` has 2 requests running"),
        "{}",
        refused.text()
    );
    // ...while the other application is served.
    for _ in 0..10 {
        let r = host.get("/hello").await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello, world"));
    }
    assert!(
        spinning.iter().all(|s| !s.is_finished()),
        "the spinning guests were stopped before their deadline"
    );

    // Once its guests are stopped, the application is served again.
    for s in spinning {
        assert_eq!(s.await.unwrap().status, 504);
    }
    let r = host.get("/misbehave/ok").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_traps_logs_a_few_lines_with_a_count() {
    let setup = Setup::new().app("bursty", &[("/misbehave/...", "burster", "misbehave")]);
    let host = setup.start().await;
    for _ in 0..40 {
        let r = host.get("/misbehave/trap").await;
        assert_eq!(r.status, 500, "{}", r.text());
    }
    let log = host_log();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("component=burster"))
        .collect();
    // The first five, then the 8th, 16th and 32nd with their count.
    assert_eq!(logged.len(), 8, "{log}");
    assert!(
        logged.iter().all(|l| l.contains("guest failed: trap:")),
        "{log}"
    );
    assert!(
        logged[7].contains("failure 32 of this component"),
        "{}",
        logged[7]
    );
    // One line each, without the backtrace.
    assert!(!logged.iter().any(|l| l.contains("backtrace")), "{log}");
    assert_eq!(host.get("/misbehave/ok").await.status, 200);
}
