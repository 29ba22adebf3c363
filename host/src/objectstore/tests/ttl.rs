use std::time::Duration;

use super::damage::raw;
use super::*;
use crate::objectstore::keys::{EXPIRY_TICK_MS, tick_of};

#[tokio::test]
async fn expired_keys_vanish_and_are_swept() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend.clone(), &master, &clock).await;
    let p = partition(&os, "app", "P").await;
    let one_second = StoreOptions {
        ttl: Some(Ttl::Fixed(1)),
        ..Default::default()
    };
    p.store("short", b"v".to_vec(), one_second).await.unwrap();
    p.store("long", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert!(p.contains("short").await.unwrap());
    clock.advance(Duration::from_millis(1100));
    assert!(!p.contains("short").await.unwrap());
    assert!(matches!(p.retrieve("short").await, Err(Error::KeyNotFound)));
    assert_eq!(p.list_keys(None, 10).await.unwrap().items, ["long"]);
    // The record is still there until the sweep reclaims it.
    assert_eq!(
        backend
            .scan(Shards::ALL, b"e", None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(os.sweep_expired().await.unwrap(), 1);
    assert_eq!(
        backend
            .scan(Shards::ALL, b"e", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        backend
            .scan(Shards::ALL, b"y", None, 10)
            .await
            .unwrap()
            .len(),
        1,
        "only long's index entry is left"
    );
    // An expired key can be stored again as a new key.
    let fail = StoreOptions {
        fail_if_present: true,
        ..one_second
    };
    p.store("short", b"again".to_vec(), fail).await.unwrap();
}

#[tokio::test]
async fn static_ttl_ignores_reads_and_rolling_ttl_is_extended_by_them() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend, &master, &clock).await;
    let p = partition(&os, "app", "P").await;
    let fixed = StoreOptions {
        ttl: Some(Ttl::Fixed(2)),
        ..Default::default()
    };
    let rolling = StoreOptions {
        ttl: Some(Ttl::Rolling(2)),
        ..Default::default()
    };
    p.store("fixed", b"v".to_vec(), fixed).await.unwrap();
    p.store("rolling", b"v".to_vec(), rolling).await.unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_millis(800));
        p.retrieve("rolling").await.unwrap();
        let _ = p.retrieve("fixed").await;
    }
    // 2.4 s after being stored: the static key expired despite the reads,
    // the rolling key lives on because of them.
    assert!(!p.contains("fixed").await.unwrap());
    assert!(p.contains("rolling").await.unwrap());
    clock.advance(Duration::from_millis(2100));
    assert!(
        !p.contains("rolling").await.unwrap(),
        "unread, the rolling key expires"
    );
}

#[tokio::test]
async fn a_ttl_past_a_hundred_years_is_refused_and_nothing_is_stored() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    let options = StoreOptions {
        ttl: Some(Ttl::Rolling(MAX_TTL_SECS + 1)),
        ..Default::default()
    };
    let refused = p.store("k", b"v".to_vec(), options).await;
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    assert!(!p.contains("k").await.unwrap());
    let longest = StoreOptions {
        ttl: Some(Ttl::Fixed(MAX_TTL_SECS)),
        ..Default::default()
    };
    assert!(p.store("k", b"v".to_vec(), longest).await.is_ok());
}

#[tokio::test]
async fn a_peek_reads_without_extending_a_rolling_ttl() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend, &master, &clock).await;
    let p = partition(&os, "app", "P").await;
    let rolling = StoreOptions {
        ttl: Some(Ttl::Rolling(4)),
        ..Default::default()
    };
    let written = p.store("k", b"v".to_vec(), rolling).await.unwrap();
    // Past a quarter of the window, a retrieve would move the expiry.
    clock.advance(Duration::from_millis(1100));
    let peeked = p.peek("k").await.unwrap();
    assert_eq!(peeked.value, b"v");
    assert_eq!(peeked.metadata.expires, written.expires);
    assert_eq!(p.peek("k").await.unwrap().metadata.expires, written.expires);
    let read = p.retrieve("k").await.unwrap();
    assert!(read.metadata.expires > written.expires);
    assert!(matches!(p.peek("absent").await, Err(Error::KeyNotFound)));
}

#[tokio::test]
async fn partition_ttl_applies_to_keys_without_their_own() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let mut p = partition(&os, "app", "P").await;
    p.set_ttl(Some(Ttl::Never)).await.unwrap();
    let m = p
        .store("forever", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(m.expires, None);
    let reopened = partition(&os, "app", "P").await;
    assert_eq!(reopened.effective_ttl(), Ttl::Never);
    let own = StoreOptions {
        ttl: Some(Ttl::Fixed(60)),
        ..Default::default()
    };
    assert!(
        reopened
            .store("own", b"v".to_vec(), own)
            .await
            .unwrap()
            .expires
            .is_some()
    );
}

#[tokio::test]
async fn a_counter_keeps_its_own_ttl() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    let forever = StoreOptions {
        ttl: Some(Ttl::Never),
        ..Default::default()
    };
    p.store("n", b"1".to_vec(), forever).await.unwrap();
    p.increment("n", 1).await.unwrap();
    assert_eq!(p.retrieve("n").await.unwrap().metadata.expires, None);
}

/// A clock set so that a key written now with a TTL of one second (the
/// options returned) expires at the start of a tick of the expiry index.
fn a_second_before_a_tick() -> (Arc<ManualClock>, StoreOptions) {
    let clock = manual_clock();
    let to_tick = EXPIRY_TICK_MS - (clock.now_ms() + 1_000) % EXPIRY_TICK_MS;
    clock.advance(Duration::from_millis(to_tick % EXPIRY_TICK_MS));
    let one_second = StoreOptions {
        ttl: Some(Ttl::Fixed(1)),
        ..Default::default()
    };
    (clock, one_second)
}

#[tokio::test]
async fn the_sweep_takes_what_is_due_within_the_current_tick_and_leaves_the_rest() {
    let (backend, master) = fresh();
    // Keys written in the first 20 ms expire within one tick.
    let (clock, one_second) = a_second_before_a_tick();
    let os = open_at(backend.clone(), &master, &clock).await;
    let p = partition(&os, "app", "P").await;
    // Many keys, so that the later ones sort before earlier ones by their
    // tags as well as after.
    let names: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let mut expires = Vec::new();
    for name in &names {
        let meta = p.store(name, b"v".to_vec(), one_second).await.unwrap();
        expires.push(meta.expires.unwrap());
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(tick_of(expires[0]), tick_of(expires[19]));
    let now = |clock: &ManualClock| clock.now_ms();
    clock.advance(Duration::from_millis(expires[10] - now(&clock)));
    // k0 to k10 are due; k11 to k19 expire later in this tick.
    assert_eq!(os.sweep_expired().await.unwrap(), 11);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(p.contains(name).await.unwrap(), i > 10, "{name}");
    }
    let left = async |prefix: &[u8]| raw(&*backend, prefix).await.len();
    assert_eq!(left(b"e").await, 9);
    assert_eq!(left(b"y").await, 9, "their index entries stay");
    assert_eq!(os.sweep_expired().await.unwrap(), 0);
    clock.advance(Duration::from_millis(expires[19] - now(&clock)));
    assert_eq!(os.sweep_expired().await.unwrap(), 9);
    assert_eq!(left(b"e").await, 0);
    assert_eq!(left(b"y").await, 0);
}

#[tokio::test]
async fn a_key_written_twice_within_a_tick_has_one_expiry_entry_and_is_swept() {
    let (backend, master) = fresh();
    let (clock, one_second) = a_second_before_a_tick();
    let os = open_at(backend.clone(), &master, &clock).await;
    let p = partition(&os, "app", "P").await;
    let expiries = async || raw(&*backend, b"y").await.len();
    // The same expiry, so the same index entry, deleted and put again in
    // one batch; then another instant of the same tick.
    let first = p.store("k", b"1".to_vec(), one_second).await.unwrap();
    let again = p.store("k", b"2".to_vec(), one_second).await.unwrap();
    assert_eq!(first.expires, again.expires);
    assert_eq!(expiries().await, 1);
    clock.advance(Duration::from_millis(1));
    let later = p.store("k", b"3".to_vec(), one_second).await.unwrap();
    assert_eq!(
        tick_of(later.expires.unwrap()),
        tick_of(first.expires.unwrap())
    );
    assert_eq!(expiries().await, 1);
    clock.advance(Duration::from_millis(1_100));
    assert_eq!(os.sweep_expired().await.unwrap(), 1);
    assert_eq!(expiries().await, 0);
    assert!(!p.contains("k").await.unwrap());
}
