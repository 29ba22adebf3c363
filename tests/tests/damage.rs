//! `ostore check` and `ostore repair` on a data directory, as an operator
//! runs them: clean data passes, each kind of damage is named with where it
//! is and fails the check, and a repair leaves data that passes again with
//! every undamaged key still readable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ostore::backend::{Backend, Batch, Expect, FileBackend, RedisBackend, Shards};
use ostore::encryption::MasterKey;
use ostore::host::DataDir;
use ostore::objectstore::{Config, ObjectStore, StoreOptions, Ttl};
use ostore_tests::redis::{RedisOptions, RedisServer};
use ostore_tests::run_ostore;

/// Where the data is: a data directory's redb file, or a Redis server
/// (with a data directory for nothing but the command's flag).
enum Data {
    Redb(PathBuf),
    Redis { url: String, dir: PathBuf },
}

impl Data {
    async fn open(&self) -> Arc<dyn Backend> {
        match self {
            Data::Redb(dir) => Arc::new(FileBackend::open(&DataDir::new(dir).database()).unwrap()),
            Data::Redis { url, .. } => {
                Arc::new(RedisBackend::connect(&url.parse().unwrap()).await.unwrap())
            }
        }
    }

    /// The flags that point a command at the data.
    fn args(&self) -> Vec<String> {
        match self {
            Data::Redb(dir) => vec!["--data-dir".into(), dir.display().to_string()],
            Data::Redis { url, dir } => vec![
                "--data-dir".into(),
                dir.display().to_string(),
                "--backend".into(),
                url.clone(),
            ],
        }
    }
}

/// Opens the data with the library, runs `work` on it, and closes it again
/// so that the commands can open it.
async fn with_store<T>(
    data: &Data,
    master: &MasterKey,
    work: impl AsyncFnOnce(&ObjectStore, &dyn Backend) -> T,
) -> T {
    let backend = data.open().await;
    let os = ObjectStore::open(backend.clone(), master, Config::default())
        .await
        .unwrap();
    let out = work(&os, &*backend).await;
    os.flush_stats().await.unwrap();
    assert!(os.close(Duration::from_secs(5)).await);
    out
}

/// 30 keys (every third with a TTL) in partition "p" of application "shop".
async fn fill(os: &ObjectStore) {
    let p = os
        .application("shop")
        .await
        .unwrap()
        .default_store()
        .await
        .unwrap()
        .partition("p")
        .await
        .unwrap();
    for i in 0..30 {
        let options = StoreOptions {
            ttl: (i % 3 == 0).then_some(Ttl::Fixed(3600)),
            ..Default::default()
        };
        p.store(
            &format!("key-{i:02}"),
            format!("value {i}").into_bytes(),
            options,
        )
        .await
        .unwrap();
    }
}

/// The shard of an entry or expiry key, as `objectstore::keys` lays them
/// out: a partition's shard is `p` and the three tags its keys carry.
fn shard_of(key: &[u8]) -> Vec<u8> {
    let tags = match key[0] {
        b'e' => &key[1..49],
        b'x' | b'y' => &key[9..57],
        other => panic!("no shard for kind {other}"),
    };
    [&b"p"[..], tags].concat()
}

/// Writes damage in the shard the key's bytes name.
async fn write(backend: &dyn Backend, key: Vec<u8>, value: Option<Vec<u8>>) {
    let mut batch = Batch::new(shard_of(&key));
    match value {
        Some(v) => batch.put(key, v, Expect::Any),
        None => batch.delete(key, Expect::Any),
    };
    backend.commit(batch).await.unwrap();
}

/// Runs `ostore <command>` on `data`.
fn ostore(command: &str, data: &Data, env: &[(&str, &str)]) -> ostore_tests::Finished {
    let mut args = vec![command.to_string()];
    args.extend(data.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ostore(&args, env)
}

#[tokio::test]
async fn check_and_repair_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    check_reports_damage_and_fails_and_repair_leaves_clean_readable_data(&Data::Redb(data)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_repair_on_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(&RedisOptions::default());
    let data = Data::Redis {
        url: server.url(),
        dir: dir.path().join("data"),
    };
    check_reports_damage_and_fails_and_repair_leaves_clean_readable_data(&data).await;
}

async fn check_reports_damage_and_fails_and_repair_leaves_clean_readable_data(data: &Data) {
    let master = MasterKey::generate();
    let key_hex = master.to_hex();
    let env = [("OSTORE_MASTER_KEY", key_hex.as_str())];
    let footprint = with_store(data, &master, async |os, _| {
        fill(os).await;
        os.application("shop").await.unwrap().footprint()
    })
    .await;

    let clean = ostore("check", data, &env);
    assert!(clean.success, "{}\n{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("0 problems"), "{}", clean.stdout);
    // What the records take, by kind: the entries as the usage counters
    // count them (keys and sealed values), and each key's expiry (a key
    // without a TTL of its own has the store's default one).
    let entries = format!("  entries: 30 records, {} bytes (", footprint.bytes);
    assert_eq!(footprint.keys, 30);
    assert!(
        clean.stdout.contains(&entries),
        "{entries}\n{}",
        clean.stdout
    );
    assert!(
        clean.stdout.contains("  expiry index: 30 records, "),
        "{}",
        clean.stdout
    );
    // redb's own count of the keys and values in its file is every
    // record's, as the walk counted them kind by kind.
    if let Data::Redb(_) = data {
        let records: u64 = clean
            .stdout
            .lines()
            .filter_map(|line| line.strip_prefix("  "))
            .map(|line| {
                let bytes = line.split(", ").nth(1).expect("records, then bytes");
                let bytes = bytes.split(' ').next().expect("a number of bytes");
                bytes.parse::<u64>().expect("a number of bytes")
            })
            .sum();
        assert!(records > footprint.bytes, "{}", clean.stdout);
        let stored = format!("redb: keys and values {records} bytes (");
        assert!(clean.stdout.contains(&stored), "{stored}\n{}", clean.stdout);
    }

    // Four kinds of damage: a flipped byte in a value, a malformed key, a
    // lost expiry index entry, and an entry gone behind the counters' back.
    let lost_entry = with_store(data, &master, async |_, backend| {
        let entries = backend.scan(Shards::ALL, b"e", None, 100).await.unwrap();
        let (key, mut sealed) = entries[4].clone();
        sealed[30] ^= 0x01;
        write(backend, key, Some(sealed)).await;
        let mut malformed = entries[5].0.clone();
        malformed.push(7);
        write(backend, malformed, Some(b"junk".to_vec())).await;
        // An index entry of an entry left intact.
        let touched: Vec<&[u8]> = entries[4..=6].iter().map(|(k, _)| &k[1..]).collect();
        let expiries = backend.scan(Shards::ALL, b"y", None, 100).await.unwrap();
        let (expiry, _) = expiries
            .into_iter()
            .find(|(k, _)| !touched.contains(&&k[9..]))
            .expect("an intact key with a TTL");
        write(backend, expiry, None).await;
        write(backend, entries[6].0.clone(), None).await;
        entries[6].0.clone()
    })
    .await;
    assert!(!lost_entry.is_empty());

    let damaged = ostore("check", data, &env);
    assert!(!damaged.success, "{}", damaged.stdout);
    for expected in [
        "damage: unreadable entry record: application \"shop\", store \"_defaultUserObjectStore\", partition \"p\", backend key 65",
        "damage: malformed key:",
        "damage: missing expiry index entry: application \"shop\"",
        "damage: usage counters say 30 keys",
        "repair sets it aside",
        "repair rebuilds it",
    ] {
        assert!(
            damaged.stdout.contains(expected),
            "{expected:?} not in\n{}",
            damaged.stdout
        );
    }
    assert!(
        damaged
            .stderr
            .contains("problems found; `ostore repair` mends what it can"),
        "{}",
        damaged.stderr
    );

    let repaired = ostore("repair", data, &env);
    assert!(repaired.success, "{}\n{}", repaired.stdout, repaired.stderr);
    assert!(
        repaired.stdout.contains("the records are clean now"),
        "{}",
        repaired.stdout
    );
    let again = ostore("check", data, &env);
    assert!(again.success, "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("2 records were set aside"),
        "{}",
        again.stdout
    );

    // 28 keys are left (one set aside, one deleted behind the counters'
    // back), each with its value, and the usage says 28.
    with_store(data, &master, async |os, _| {
        let app = os.application("shop").await.unwrap();
        let p = app
            .default_store()
            .await
            .unwrap()
            .partition("p")
            .await
            .unwrap();
        let listed = p.list_keys(None, 1000).await.unwrap().items;
        assert_eq!(listed.len(), 28);
        for name in &listed {
            let i: u32 = name["key-".len()..].parse().unwrap();
            assert_eq!(
                p.retrieve(name).await.unwrap().value,
                format!("value {i}").into_bytes()
            );
        }
        assert_eq!(app.footprint().keys, 28);
    })
    .await;
}

#[test]
fn check_refuses_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nothing");
    let run = run_ostore(&["check", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("no database at"), "{}", run.stderr);
}
