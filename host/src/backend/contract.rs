//! The contract every [`Backend`] keeps, as a suite any backend can be run
//! through: ours in their tests (redb, memory, Redis standalone and Redis
//! Cluster), and an embedder's own backend in theirs.
//!
//! [`keeps_the_contract`] panics, naming what failed, on the first broken
//! promise. Give it an empty backend: it writes keys of its own.

use std::sync::Arc;

use super::{Backend, BackendError, Batch, Expect, Pair, Shards};

async fn put(
    b: &dyn Backend,
    shard: &[u8],
    k: &[u8],
    v: &[u8],
    expect: Expect,
) -> Result<(), BackendError> {
    let mut batch = Batch::new(shard);
    batch.put(k.to_vec(), v.to_vec(), expect);
    b.commit(batch).await
}

fn keys(pairs: Vec<Pair>) -> Vec<Vec<u8>> {
    pairs.into_iter().map(|(k, _)| k).collect()
}

/// Runs the whole contract against `b`, which must start empty.
pub async fn keeps_the_contract(b: Arc<dyn Backend>) {
    const S: &[u8] = b"s1";
    assert_eq!(b.get(S, b"a").await.unwrap(), None);
    put(&*b, S, b"a", b"1", Expect::Absent).await.unwrap();
    assert_eq!(b.get(S, b"a").await.unwrap().as_deref(), Some(&b"1"[..]));

    // Several keys of a shard read at once, in their order.
    let many = [b"a".to_vec(), b"none".to_vec(), b"a".to_vec()];
    assert_eq!(
        b.get_many(S, &many).await.unwrap(),
        vec![Some(b"1".to_vec()), None, Some(b"1".to_vec())],
        "get_many"
    );
    assert_eq!(
        b.get_many(S, &[]).await.unwrap(),
        Vec::<Option<Vec<u8>>>::new()
    );
    // A batch as large as a listing's page (which a backend may read in
    // parts, at once): every value in its place, present or not.
    let mut batch = Batch::new(S);
    for i in (0..1000).step_by(3) {
        batch.put(
            format!("m/{i}").into_bytes(),
            i.to_string().into_bytes(),
            Expect::Any,
        );
    }
    b.commit(batch).await.unwrap();
    let many: Vec<Vec<u8>> = (0..1001)
        .rev()
        .map(|i| format!("m/{i}").into_bytes())
        .collect();
    let expected: Vec<Option<Vec<u8>>> = (0..1001)
        .rev()
        .map(|i| (i % 3 == 0 && i < 1000).then(|| i.to_string().into_bytes()))
        .collect();
    assert_eq!(
        b.get_many(S, &many).await.unwrap(),
        expected,
        "get_many of 1,001 keys"
    );
    let mut cleanup = Batch::new(S);
    for key in many {
        cleanup.delete(key, Expect::Any);
    }
    b.commit(cleanup).await.unwrap();

    // A failed expectation writes nothing of its batch.
    let mut batch = Batch::new(S);
    batch.put(b"b".to_vec(), b"2".to_vec(), Expect::Any);
    batch.put(b"a".to_vec(), b"x".to_vec(), Expect::Absent);
    assert!(matches!(b.commit(batch).await, Err(BackendError::Conflict)));
    assert_eq!(b.get(S, b"b").await.unwrap(), None);
    assert_eq!(b.get(S, b"a").await.unwrap().as_deref(), Some(&b"1"[..]));
    put(&*b, S, b"a", b"2", Expect::Value(b"1".to_vec()))
        .await
        .unwrap();
    assert!(matches!(
        put(&*b, S, b"a", b"3", Expect::Value(b"1".to_vec())).await,
        Err(BackendError::Conflict)
    ));
    // Every expectation of a batch is checked before any write of it.
    let mut batch = Batch::new(S);
    batch.put(b"c".to_vec(), b"c".to_vec(), Expect::Absent);
    batch.put(b"c".to_vec(), b"d".to_vec(), Expect::Value(b"c".to_vec()));
    assert!(matches!(b.commit(batch).await, Err(BackendError::Conflict)));
    assert_eq!(b.get(S, b"c").await.unwrap(), None);

    // Values are bytes, whatever they hold: empty, zeros, large.
    let big = vec![0xa5u8; 1 << 20];
    for (k, v) in [
        (&b"v/empty"[..], &b""[..]),
        (b"v/zeros", b"\0\0\0"),
        (b"v/big", &big),
    ] {
        put(&*b, S, k, v, Expect::Absent).await.unwrap();
        assert_eq!(b.get(S, k).await.unwrap().as_deref(), Some(v), "{k:?}");
    }
    let mut cleanup = Batch::new(S);
    for k in [&b"v/empty"[..], b"v/zeros", b"v/big"] {
        cleanup.delete(k.to_vec(), Expect::Any);
    }
    b.commit(cleanup).await.unwrap();

    // Scans are ordered, bounded by prefix, limit and `after`, and merge the
    // shards they read. Keys are compared as bytes, 0x00 and 0xff included.
    for (shard, k) in [
        (&b"p1"[..], &b"p/1x"[..]),
        (b"p1", b"p/1"),
        (b"p1", b"p/2"),
        (b"p2", b"p/3"),
        (b"p2", b"p/\xff"),
        (b"p2", b"p/\x00"),
        (b"q", b"q/1"),
        (b"o", b"o/9"),
    ] {
        put(&*b, shard, k, k, Expect::Any).await.unwrap();
    }
    let p = Shards::StartingWith(b"p");
    let all_p: Vec<&[u8]> = vec![b"p/\x00", b"p/1", b"p/1x", b"p/2", b"p/3", b"p/\xff"];
    assert_eq!(keys(b.scan(p, b"p/", None, 10).await.unwrap()), all_p);
    assert_eq!(
        keys(b.scan(p, b"p/", None, 2).await.unwrap()),
        [&b"p/\x00"[..], b"p/1"]
    );
    assert_eq!(
        keys(b.scan(p, b"p/", Some(b"p/1"), 10).await.unwrap()),
        all_p[2..]
    );
    // A scan of one shard, for a prefix only it holds.
    assert_eq!(
        keys(b.scan(Shards::One(b"p1"), b"p/1", None, 10).await.unwrap()),
        [&b"p/1"[..], b"p/1x"]
    );
    assert!(
        b.scan(p, b"p/", Some(b"p/\xff"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // An `after` before the prefix starts at the prefix.
    assert_eq!(keys(b.scan(p, b"p/", Some(b"a"), 10).await.unwrap()), all_p);
    // The values come with their keys.
    let pairs = b.scan(Shards::ALL, b"q/", None, 10).await.unwrap();
    assert_eq!(pairs, [(b"q/1".to_vec(), b"q/1".to_vec())]);
    let mut delete = Batch::new(&b"p1"[..]);
    delete.delete(b"p/2".to_vec(), Expect::Any);
    b.commit(delete).await.unwrap();
    assert_eq!(
        keys(b.scan(p, b"p/", None, 10).await.unwrap()),
        [&b"p/\x00"[..], b"p/1", b"p/1x", b"p/3", b"p/\xff"]
    );
    // Deleting what is absent is no error.
    let mut delete = Batch::new(&b"p1"[..]);
    delete.delete(b"p/absent".to_vec(), Expect::Any);
    b.commit(delete).await.unwrap();

    // Concurrent conditional creates of one key: exactly one wins.
    let racers: Vec<_> = (0..50u8)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { put(&*b, S, b"race", &[i], Expect::Absent).await.is_ok() })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);

    // Concurrent compare-and-swap increments: none lost.
    put(&*b, S, b"counter", b"0", Expect::Absent).await.unwrap();
    let incrementers: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let now = b.get(S, b"counter").await.unwrap().unwrap();
                        let n: u32 = std::str::from_utf8(&now).unwrap().parse().unwrap();
                        let next = (n + 1).to_string();
                        match put(&*b, S, b"counter", next.as_bytes(), Expect::Value(now)).await {
                            Ok(()) => break,
                            Err(BackendError::Conflict) => continue,
                            Err(e) => panic!("increment failed: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for i in incrementers {
        i.await.unwrap();
    }
    assert_eq!(
        b.get(S, b"counter").await.unwrap().as_deref(),
        Some(&b"80"[..])
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{FileBackend, MemoryBackend};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_backend_keeps_the_contract() {
        keeps_the_contract(Arc::new(MemoryBackend::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fault_injecting_backend_keeps_the_contract_while_healthy() {
        use crate::backend::fault::{Faults, FaultyBackend, Stage};
        let inner = Arc::new(MemoryBackend::new());
        let faulty = FaultyBackend::new(inner, Faults::new(), Stage::BeforeCommit);
        keeps_the_contract(Arc::new(faulty)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_backend_keeps_the_contract_and_its_data() {
        let dir = std::env::temp_dir().join(format!("ostore-contract-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.redb");
        let _ = std::fs::remove_file(&path);
        keeps_the_contract(Arc::new(FileBackend::open(&path).unwrap())).await;
        // Many concurrent writers, grouped into shared commits, all land.
        {
            let file = Arc::new(FileBackend::open(&path).unwrap());
            let b: Arc<dyn Backend> = file.clone();
            let writers: Vec<_> = (0..200u32)
                .map(|i| {
                    let b = b.clone();
                    tokio::spawn(async move {
                        let k = format!("w/{i:03}");
                        put(&*b, b"w", k.as_bytes(), b"v", Expect::Absent).await
                    })
                })
                .collect();
            for w in writers {
                w.await.unwrap().unwrap();
            }
            // Writes that waited while a commit was syncing shared the next
            // transaction: fewer fsyncs than writes.
            let stats = file.commit_stats();
            assert_eq!(stats.batches, 200);
            assert!(
                stats.transactions < 200,
                "{stats:?}: no write shared a commit"
            );
        }
        let reopened = FileBackend::open(&path).unwrap();
        let written = reopened.scan(Shards::ALL, b"w/", None, 1000).await;
        assert_eq!(written.unwrap().len(), 200);
        assert_eq!(
            reopened.get(b"s1", b"a").await.unwrap().as_deref(),
            Some(&b"2"[..])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
