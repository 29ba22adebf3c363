//! Applications served together never see each other's data.

use ostore_tests::{Serves, Setup, guest, run_ostore, write_manifest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_on_one_host_do_not_share_keys() {
    let setup = Setup::new()
        .app("app-a", &[("/a/...", "flow", "store-flow")])
        .app("app-b", &[("/b/...", "flow", "store-flow")]);
    let host = setup.start().await;
    let r = host
        .request("POST", "/a", r#"{"key": "shared", "value": "from a"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(host.get("/a/shared").await.text(), "from a");
    assert_eq!(
        host.get("/b/shared").await.status,
        404,
        "b must not see a's key"
    );

    host.request("POST", "/b", r#"{"key": "shared", "value": "from b"}"#)
        .await;
    assert_eq!(host.get("/a/shared").await.text(), "from a");
    assert_eq!(host.get("/b/shared").await.text(), "from b");
    assert_eq!(host.get("/b").await.text(), "shared\n");
}

/// Through `ostore up`: one clear error, and the exit status.
#[test]
fn overlapping_routes_across_applications_and_duplicate_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let flow = guest("store-flow");
    let a = write_manifest(dir.path(), "app-a", &[("/store/...", "flow", &flow)]);
    let b = write_manifest(dir.path(), "app-b", &[("/store/x", "flow", &flow)]);
    let data = dir.path().join("data");
    let run = |m1: &std::path::Path, m2: &std::path::Path| {
        run_ostore(
            &[
                "up",
                "--listen",
                "127.0.0.1:0",
                "-f",
                m1.to_str().unwrap(),
                "-f",
                m2.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &[],
        )
    };
    let clash = run(&a, &b);
    assert!(!clash.success);
    assert!(clash.stderr.contains("overlaps"), "{}", clash.stderr);
    let twin_dir = dir.path().join("twin");
    let twin = write_manifest(&twin_dir, "app-a", &[("/other/...", "flow", &flow)]);
    let dup = run(&a, &twin);
    assert!(!dup.success);
    assert!(dup.stderr.contains("app-a"), "{}", dup.stderr);
}
