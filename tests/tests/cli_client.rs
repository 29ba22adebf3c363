//! The command-line client (`ostore kv`, `stores`, `partitions`, `stats`)
//! against a real HTTPS server.

use ostore_tests::{OstoreProcess, create_credential, guest, run_ostore, write_manifest};

#[test]
fn kv_stores_partitions_and_stats_commands_work_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    assert!(
        run_ostore(
            &["tls", "self-signed", "--out-dir", tls.to_str().unwrap()],
            &[]
        )
        .success
    );
    let manifest = write_manifest(
        dir.path(),
        "cli-app",
        &[("/store/...", "flow", &guest("store-flow"))],
    );
    let data = dir.path().join("data");
    let credential = create_credential(&data, &["--app", "cli-app"], &[]);
    let (id, secret) = (credential.id, credential.secret);
    let cert = tls.join("cert.pem");
    let host = OstoreProcess::start(&[
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        tls.join("key.pem").to_str().unwrap(),
    ]);
    let server = format!("https://localhost:{}", host.addr.port());
    let env = [
        ("OSTORE_SERVER", server.as_str()),
        ("OSTORE_CACERT", cert.to_str().unwrap()),
        ("OSTORE_ENVIRONMENT", "cli-app"),
        ("OSTORE_CLIENT_ID", id.as_str()),
        ("OSTORE_CLIENT_SECRET", secret.as_str()),
    ];
    let ok = |args: &[&str]| {
        let run = run_ostore(args, &env);
        assert!(run.success, "{args:?}: {}", run.stderr);
        run.stdout
    };
    ok(&["kv", "put", "-p", "P", "greeting", "hello, world"]);
    ok(&["kv", "put", "-p", "P", "answer", "42", "--number"]);
    let file = dir.path().join("blob");
    std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();
    ok(&[
        "kv",
        "put",
        "-p",
        "P",
        "blob",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(ok(&["kv", "get", "-p", "P", "greeting"]), "hello, world\n");
    assert_eq!(ok(&["kv", "get", "-p", "P", "answer"]), "42\n");
    assert_eq!(
        run_ostore(&["kv", "get", "-p", "P", "blob"], &env).raw_stdout,
        [0u8, 159, 146, 150]
    );
    let mut keys: Vec<String> = ok(&["kv", "list", "-p", "P"])
        .lines()
        .map(String::from)
        .collect();
    keys.sort();
    assert_eq!(keys, ["answer", "blob", "greeting"]);
    assert_eq!(
        ok(&["kv", "list", "-p", "P", "--prefix", "gr"]),
        "greeting\n"
    );
    ok(&["kv", "delete", "-p", "P", "blob"]);
    let missing = run_ostore(&["kv", "get", "-p", "P", "blob"], &env);
    assert!(!missing.success);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    assert!(ok(&["stores", "list"]).starts_with("_defaultUserObjectStore  ttl 2592000s static"));
    assert_eq!(ok(&["partitions", "list"]), "P\n");
    let stats = ok(&["stats"]);
    let today = stats.lines().last().unwrap();
    assert!(
        today
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 8,
        "{stats}"
    );
    ok(&["partitions", "delete", "P"]);
    assert_eq!(ok(&["partitions", "list"]), "");

    let wrong = run_ostore(
        &["stores", "list"],
        &[
            ("OSTORE_SERVER", server.as_str()),
            ("OSTORE_ENVIRONMENT", "cli-app"),
        ],
    );
    assert!(
        !wrong.success && wrong.stderr.contains("--client-id"),
        "{}",
        wrong.stderr
    );
    let untrusted = run_ostore(&["stores", "list", "--cacert", "/dev/null"], &env);
    assert!(!untrusted.success);
}
