//! Nothing is plaintext at rest, altered records are refused, and a wrong
//! master key stops the host at start.

use std::sync::Arc;

use ostore::auth::{Principal, Scope};
use ostore::backend::{Backend, Batch, Expect, FileBackend, Shards};
use ostore_tests::{OstoreProcess, Serves, Setup, files_under, guest, run_ostore, write_manifest};

const KEY: &str = "SecretKey-7f3a";
const VALUE: &str = "SecretValue-9c1e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_name_or_value_is_on_disk_and_a_flipped_byte_is_an_integrity_error() {
    let setup = Setup::new().app(
        "plaintext-app",
        &[("/store/...", "store-flow", "store-flow")],
    );
    let data = setup.data.clone();
    let host = setup.start().await;
    let body = format!(r#"{{"key": "{KEY}", "value": "{VALUE}"}}"#);
    assert_eq!(host.request("POST", "/store", body).await.status, 200);
    host.stop().await;

    let files = files_under(&data);
    assert!(files.iter().any(|f| f.ends_with("ostore.redb")));
    // The disk reserve beside the database is searched too: it must hold
    // zeros only.
    assert!(files.iter().any(|f| f.ends_with("ostore.redb.reserve")));
    // Not the name, nor a prefix of it (the index of names keeps names and
    // separators, all sealed), down to six bytes, below which a match by
    // chance in megabytes of sealed bytes becomes likely.
    let prefixes = (6..KEY.len()).map(|n| &KEY[..n]);
    for needle in [
        KEY,
        VALUE,
        "ObjectStoreTutorial",
        "_defaultUserObjectStore",
        "plaintext-app",
    ]
    .into_iter()
    .chain(prefixes)
    {
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} is in plaintext in {}",
                file.display()
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the generated key file is private");
        // The database is sealed, but what it reveals (sizes, when keys
        // expire) is no one else's business either.
        let mode = std::fs::metadata(data.join("ostore.redb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the database file is private");
    }

    // Flip one byte in the middle of the stored entry, as a disk fault or an
    // attacker would.
    {
        let backend = FileBackend::open(&data.join("ostore.redb")).unwrap();
        let entries = backend.scan(Shards::ALL, b"e", None, 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        let (key, mut sealed) = entries.into_iter().next().unwrap();
        let middle = sealed.len() / 2;
        sealed[middle] ^= 0x01;
        // An entry's shard is its partition: `p` and the three tags that
        // follow the entry's kind byte.
        let mut batch = Batch::new([&b"p"[..], &key[1..49]].concat());
        batch.put(key, sealed, Expect::Any);
        Arc::new(backend).commit(batch).await.unwrap();
    }
    let host = setup.start().await;
    let r = host.get(&format!("/store/{KEY}")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("integrity"), "{}", r.text());
    assert!(!r.text().contains(VALUE));
    // Other keys are unaffected.
    assert_eq!(
        host.request("POST", "/store", r#"{"key": "other", "value": "fine"}"#)
            .await
            .status,
        200
    );
    assert_eq!(host.get("/store/other").await.text(), "fine");
}

/// Through `ostore up`: the key comes from its environment, and a wrong one
/// is an exit with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_id_or_secret_is_on_disk() {
    let setup = Setup::new().app(
        "plaintext-app",
        &[("/store/...", "store-flow", "store-flow")],
    );
    let data = setup.data.clone();
    // One credential made before the host starts (in the database), one
    // while it runs (through the host).
    let admin = setup.credential(Principal::Admin, &[]);
    let host = setup.start().await;
    let reader = setup.credential(
        Principal::Application("plaintext-app".into()),
        &[Scope::ReadStore],
    );
    let token = host.token(&reader).await;
    let _ = host.token(&admin).await;
    host.stop().await;

    let files = files_under(&data);
    assert!(files.iter().any(|f| f.ends_with("ostore.redb")));
    assert!(
        !files.iter().any(|f| f.ends_with("credentials.sock")),
        "the socket is removed when the host stops"
    );
    for needle in [
        admin.id.as_str(),
        &admin.secret,
        &reader.id,
        &reader.secret,
        &token,
        "plaintext-app",
        "read:store",
    ] {
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} is in plaintext in {}",
                file.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "keyed",
        &[("/store/...", "store-flow", &guest("store-flow"))],
    );
    let data = dir.path().join("data");
    let args = [
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let right = "11".repeat(32);
    let host = OstoreProcess::start_with_env(&args, &[("OSTORE_MASTER_KEY", &right)]);
    assert_eq!(
        host.request("POST", "/store", r#"{"key": "k", "value": "v"}"#)
            .await
            .status,
        200
    );
    host.stop();

    let mut up = vec!["up", "--listen", "127.0.0.1:0"];
    up.extend(args);
    let wrong = run_ostore(&up, &[("OSTORE_MASTER_KEY", &"22".repeat(32))]);
    assert!(!wrong.success);
    assert!(
        wrong.stderr.contains("master key does not match"),
        "{}",
        wrong.stderr
    );
    let malformed = run_ostore(&up, &[("OSTORE_MASTER_KEY", "not-hex")]);
    assert!(!malformed.success);
    assert!(
        malformed.stderr.contains("malformed master key"),
        "{}",
        malformed.stderr
    );

    let host = OstoreProcess::start_with_env(&args, &[("OSTORE_MASTER_KEY", &right)]);
    assert_eq!(host.get("/store/k").await.text(), "v");
}

/// Through `ostore up`: an exit with a message, and no new key file.
#[test]
fn data_without_its_key_file_is_refused_without_making_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "keyless",
        &[("/store/...", "store-flow", &guest("store-flow"))],
    );
    let data = dir.path().join("data");
    let up = [
        "up",
        "-f",
        manifest.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    // A first start makes the key and the database; stop it at once.
    let host = OstoreProcess::start(&[
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    host.stop();
    std::fs::remove_file(data.join("master.key")).unwrap();
    let run = run_ostore(&up, &[]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("master key file") && run.stderr.contains("missing"),
        "{}",
        run.stderr
    );
    assert!(
        !data.join("master.key").exists(),
        "no new key was made for old data"
    );
}
