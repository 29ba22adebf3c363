//! The layout as a whole: every key round-trips through encode and parse,
//! starts with its prefixes, and lives in the shard its prefix names.

use super::*;
use crate::encryption::TAG_LEN;

fn tag(n: u8) -> Tag {
    [n; TAG_LEN]
}

/// A partition and a key of it, with tags 1 to 4.
fn ids() -> (PartitionId, EntryId) {
    let partition = PartitionId {
        app: tag(1),
        store: tag(2),
        partition: tag(3),
    };
    let entry = EntryId {
        partition,
        key: tag(4),
    };
    (partition, entry)
}

#[test]
fn every_key_round_trips_and_starts_with_its_prefixes() {
    let (partition, entry) = ids();
    let keys = [
        RecordKey::MasterCheck,
        RecordKey::App(tag(1)),
        RecordKey::Store {
            app: tag(1),
            store: tag(2),
        },
        RecordKey::StoreTombstone {
            app: tag(1),
            store: tag(2),
        },
        RecordKey::Partition(partition),
        RecordKey::Stats {
            app: tag(1),
            store: tag(2),
            day: 20_000,
        },
        RecordKey::Entry(entry),
        RecordKey::Expiry { tick: 7, entry },
        RecordKey::LegacyExpiry { at: 7, entry },
        RecordKey::Credential(tag(5)),
        RecordKey::IndexPage { partition, page: 9 },
        RecordKey::NamePage {
            app: tag(1),
            store: None,
            page: 9,
        },
        RecordKey::NamePage {
            app: tag(1),
            store: Some(tag(2)),
            page: 9,
        },
    ];
    for key in keys {
        let bytes = key.encode();
        assert_eq!(RecordKey::parse(&bytes), Some(key), "{key:?}");
        for cut in 1..bytes.len() {
            assert_eq!(
                RecordKey::parse(&bytes[..cut]),
                None,
                "{key:?} cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(RecordKey::parse(&longer), None, "{key:?} with a byte more");
    }
    // The layout of the module doc, byte for byte: existing data stays
    // readable.
    assert_eq!(RecordKey::MasterCheck.encode(), b"m/master-check");
    let expiry = RecordKey::expiry(7 * EXPIRY_TICK_MS + 31, entry).encode();
    assert_eq!(expiry.len(), 1 + 8 + 4 * TAG_LEN);
    assert_eq!(&expiry[..9], b"y\0\0\0\0\0\0\0\x07");
    assert_eq!(&expiry[9..], &RecordKey::Entry(entry).encode()[1..]);
    let legacy = RecordKey::LegacyExpiry { at: 7, entry }.encode();
    assert_eq!(legacy.len(), 1 + 8 + 4 * TAG_LEN);
    assert_eq!(&legacy[..9], b"x\0\0\0\0\0\0\0\x07");
    assert_eq!(&legacy[9..], &RecordKey::Entry(entry).encode()[1..]);

    let entry_key = RecordKey::Entry(entry).encode();
    for prefix in [
        partition.entries(),
        Prefix::StoreEntries {
            app: tag(1),
            store: tag(2),
        },
    ] {
        assert!(entry_key.starts_with(&prefix.encode()), "{prefix:?}");
    }
    let other_store = Prefix::StoreEntries {
        app: tag(1),
        store: tag(9),
    };
    assert!(!entry_key.starts_with(&other_store.encode()));
}

#[test]
fn every_prefix_names_the_shards_of_its_records() {
    let (partition, entry) = ids();
    let in_span = |key: RecordKey, prefix: Prefix| {
        let shard = key.shard().encode();
        assert!(
            key.encode().starts_with(&prefix.encode()),
            "{key:?} {prefix:?}"
        );
        match prefix.shards() {
            ShardSpan::One(name) => assert_eq!(name, shard, "{key:?} {prefix:?}"),
            ShardSpan::StartingWith(start) => {
                assert!(shard.starts_with(&start), "{key:?} {prefix:?}")
            }
        }
    };
    let store = RecordKey::Store {
        app: tag(1),
        store: tag(2),
    };
    in_span(RecordKey::App(tag(1)), Prefix::Apps);
    in_span(store, Prefix::Stores(tag(1)));
    let tombstone = RecordKey::StoreTombstone {
        app: tag(1),
        store: tag(2),
    };
    in_span(tombstone, Prefix::StoreTombstones);
    // A tombstone lives in the shard of the store record it replaces, so
    // that one batch swaps them.
    assert_eq!(tombstone.shard(), store.shard());
    in_span(
        RecordKey::Partition(partition),
        Prefix::Partitions {
            app: tag(1),
            store: tag(2),
        },
    );
    let stats = RecordKey::Stats {
        app: tag(1),
        store: tag(2),
        day: 3,
    };
    in_span(
        stats,
        Prefix::Stats {
            app: tag(1),
            store: None,
        },
    );
    in_span(RecordKey::Expiry { tick: 5, entry }, Prefix::Expiries);
    in_span(
        RecordKey::LegacyExpiry { at: 5, entry },
        Prefix::LegacyExpiries,
    );
    assert!(
        !(RecordKey::Expiry { tick: 5, entry }.encode())
            .starts_with(&Prefix::LegacyExpiries.encode())
    );
    let usage = RecordKey::Usage {
        app: tag(1),
        store: tag(2),
    };
    in_span(usage, Prefix::Usage(tag(1)));
    in_span(
        RecordKey::Entry(entry),
        Prefix::StoreEntries {
            app: tag(1),
            store: tag(2),
        },
    );
    in_span(RecordKey::Entry(entry), partition.entries());
    let page = RecordKey::IndexPage { partition, page: 3 };
    in_span(page, Prefix::PartitionIndex(partition));
    in_span(
        page,
        Prefix::StoreIndex {
            app: tag(1),
            store: tag(2),
        },
    );
    // A partition's index pages share its entries' shard, so that one
    // batch changes a key and the index together.
    assert_eq!(page.shard(), RecordKey::Entry(entry).shard());
    // So do its kept counts, so that the same batch changes them.
    let counts = RecordKey::Counts { partition, slot: 7 };
    assert_eq!(counts.shard(), RecordKey::Entry(entry).shard());
    in_span(counts, Prefix::PartitionCounts(partition));
    in_span(counts, Prefix::Counts(tag(1)));
    in_span(
        counts,
        Prefix::StoreCounts {
            app: tag(1),
            store: tag(2),
        },
    );
    let bytes = counts.encode();
    assert_eq!(RecordKey::parse(&bytes), Some(counts));
    assert_eq!(RecordKey::parse(&bytes[..bytes.len() - 1]), None);
    assert!(!bytes.starts_with(&Prefix::Counts(tag(9)).encode()));
    // Another application's partitions are not in its span.
    let ShardSpan::StartingWith(start) = Prefix::Counts(tag(9)).shards() else {
        panic!("counts of an application span its partitions")
    };
    assert!(!RecordKey::Entry(entry).shard().encode().starts_with(&start));
}

#[test]
fn name_pages_live_with_the_records_they_index_and_scopes_do_not_overlap() {
    let (partition, _) = ids();
    let stores = RecordKey::NamePage {
        app: tag(1),
        store: None,
        page: 4,
    };
    let partitions = RecordKey::NamePage {
        app: tag(1),
        store: Some(tag(2)),
        page: 4,
    };
    let of = |store| Prefix::NamePages { app: tag(1), store };
    in_one_shard(stores, of(None));
    in_one_shard(partitions, of(Some(tag(2))));
    // One batch writes a store's (or a partition's) record and its name.
    let store = RecordKey::Store {
        app: tag(1),
        store: tag(2),
    };
    assert_eq!(stores.shard(), store.shard());
    assert_eq!(partitions.shard(), RecordKey::Partition(partition).shard());
    // No scope's scan reaches another's pages.
    assert!(!partitions.encode().starts_with(&of(None).encode()));
    assert!(!stores.encode().starts_with(&of(Some(tag(2))).encode()));
    assert!(!partitions.encode().starts_with(&of(Some(tag(3))).encode()));
    // A page id is the key's last 8 bytes, after either scope.
    assert_eq!(
        &stores.encode()[stores.encode().len() - 8..],
        &4u64.to_be_bytes()
    );
    let bytes = partitions.encode();
    assert_eq!(bytes.len(), 1 + TAG_LEN + 1 + TAG_LEN + 8);
    // A name page's key that a flipped byte makes unparseable is still
    // deleted from its application's shard.
    let mut damaged = bytes.clone();
    damaged[1 + TAG_LEN] = b'?';
    assert_eq!(RecordKey::parse(&damaged), None);
    assert!(probable_shards(&damaged).contains(&Shard::App(tag(1)).encode()));
}

fn in_one_shard(key: RecordKey, prefix: Prefix) {
    assert!(key.encode().starts_with(&prefix.encode()), "{key:?}");
    assert_eq!(prefix.shards(), ShardSpan::One(key.shard().encode()));
}

#[test]
fn entries_and_their_expiries_share_the_partitions_shard() {
    let (partition, entry) = ids();
    for expiry in RecordKey::expiries(1, entry) {
        assert_eq!(RecordKey::Entry(entry).shard(), expiry.shard());
    }
    assert_eq!(
        RecordKey::Partition(partition).shard(),
        RecordKey::App(tag(1)).shard()
    );
    assert_ne!(
        RecordKey::Entry(entry).shard(),
        RecordKey::App(tag(1)).shard()
    );
}

#[test]
fn usage_and_rate_bucket_keys_round_trip_in_the_applications_shard() {
    let keys = [
        RecordKey::Usage {
            app: tag(1),
            store: tag(2),
        },
        RecordKey::RateBucket(tag(1)),
    ];
    for key in keys {
        let bytes = key.encode();
        assert_eq!(RecordKey::parse(&bytes), Some(key), "{key:?}");
        for cut in 1..bytes.len() {
            assert_eq!(
                RecordKey::parse(&bytes[..cut]),
                None,
                "{key:?} cut at {cut}"
            );
        }
        assert_eq!(key.shard(), RecordKey::App(tag(1)).shard(), "{key:?}");
    }
    let usage = keys[0].encode();
    assert_eq!(usage.len(), 1 + 2 * TAG_LEN);
    assert!(usage.starts_with(&Prefix::Usage(tag(1)).encode()));
    assert!(!usage.starts_with(&Prefix::Usage(tag(9)).encode()));
    assert_eq!(keys[1].encode(), [&b"r"[..], &tag(1)].concat());
}

#[test]
fn credentials_are_host_records_under_their_own_prefix() {
    let key = RecordKey::Credential(tag(5));
    assert_eq!(key.shard(), Shard::Host);
    assert_eq!(key.shard(), RecordKey::MasterCheck.shard());
    let bytes = key.encode();
    assert_eq!(bytes.len(), 1 + TAG_LEN);
    assert_eq!(bytes[0], b'i');
    assert!(bytes.starts_with(&Prefix::Credentials.encode()));
    // No other kind's keys fall under the credentials' prefix, so a
    // listing of credentials reads nothing else.
    let (partition, entry) = ids();
    for other in [
        RecordKey::MasterCheck,
        RecordKey::App(tag(1)),
        RecordKey::Partition(partition),
        RecordKey::Entry(entry),
        RecordKey::Expiry { tick: 7, entry },
        RecordKey::LegacyExpiry { at: 7, entry },
    ] {
        assert!(!other.encode().starts_with(&Prefix::Credentials.encode()));
    }
}

#[test]
fn the_expiry_index_sorts_by_the_tick_then_by_the_tags() {
    let (partition, _) = ids();
    let entry = |key| EntryId {
        partition,
        key: tag(key),
    };
    let ms = |tick: u64, within: u64| tick * EXPIRY_TICK_MS + within;
    assert_eq!(tick_of(ms(5, EXPIRY_TICK_MS - 1)), 5);
    assert_eq!(tick_start(5), ms(5, 0));
    // Within a tick by the key's tag, whatever the milliseconds: keys
    // written together spread over their tick's run of the index.
    let late_small_tag = RecordKey::expiry(ms(5, EXPIRY_TICK_MS - 1), entry(1)).encode();
    let early_large_tag = RecordKey::expiry(ms(5, 0), entry(2)).encode();
    let next_tick = RecordKey::expiry(ms(6, 0), entry(0)).encode();
    assert!(late_small_tag < early_large_tag);
    assert!(early_large_tag < next_tick);
    assert_eq!(
        RecordKey::parse(&late_small_tag).and_then(|k| k.expiring()),
        Some((5, entry(1)))
    );
    // A legacy entry stands for the tick of its milliseconds.
    let legacy = RecordKey::LegacyExpiry {
        at: ms(5, 3),
        entry: entry(1),
    };
    assert_eq!(legacy.expiring(), Some((5, entry(1))));
    assert_eq!(RecordKey::Entry(entry(1)).expiring(), None);
    // A tick past the last millisecond is no overflow.
    assert_eq!(tick_start(u64::MAX), u64::MAX);
}
