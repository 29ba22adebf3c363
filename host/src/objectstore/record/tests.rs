use super::*;
use crate::objectstore::types::{StoreQuota, Ttl, ValueKind};

#[test]
fn records_round_trip_and_truncations_are_rejected() {
    let entry = EntryRecord {
        key: "k€y".into(),
        created: 1,
        updated: 2,
        expires: Some(3),
        version: 4,
        ttl: Ttl::Rolling(60),
        kind: ValueKind::String,
        value: b"value".to_vec(),
    };
    let bytes = entry.encode();
    assert_eq!(EntryRecord::decode(&bytes).unwrap(), entry);
    for cut in 0..bytes.len() {
        assert!(EntryRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let counts = CountsRecord {
        keys: -2,
        bytes: 7,
        seq: u64::MAX,
    };
    assert_eq!(CountsRecord::decode(&counts.encode()).unwrap(), counts);
    let part = PartitionRecord {
        name: "p".into(),
        ttl: None,
    };
    assert_eq!(PartitionRecord::decode(&part.encode()).unwrap(), part);
    let store = StoreRecord {
        name: "s".into(),
        default_ttl: Ttl::Fixed(9),
        quota: StoreQuota {
            max_keys: Some(0),
            max_bytes: None,
        },
    };
    assert_eq!(StoreRecord::decode(&store.encode()).unwrap(), store);
    let tombstone = StoreTombstone {
        name: "s".into(),
        since_ms: 1 << 41,
    };
    let bytes = tombstone.encode();
    assert_eq!(StoreTombstone::decode(&bytes).unwrap(), tombstone);
    for cut in 0..bytes.len() {
        assert!(
            StoreTombstone::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn usage_and_rate_records_round_trip_and_truncations_are_rejected() {
    let usage = UsageRecord {
        keys: -3,
        bytes: 1 << 40,
    };
    assert_eq!(UsageRecord::decode(&usage.encode()).unwrap(), usage);
    let rate = RateRecord {
        level_milli: 12_345,
        at_ms: 7,
        leases: vec![
            RateLease {
                at_ms: 5,
                tokens: 2,
            },
            RateLease {
                at_ms: 6,
                tokens: 1,
            },
        ],
    };
    let bytes = rate.encode();
    assert_eq!(RateRecord::decode(&bytes).unwrap(), rate);
    for cut in 0..bytes.len() {
        assert!(RateRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // A lease count far beyond the bytes present is refused, not
    // allocated.
    let mut lying = RateRecord::default().encode();
    let count_at = lying.len() - 8;
    lying[count_at..].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(RateRecord::decode(&lying).is_err());
}

#[test]
fn credential_records_round_trip_and_truncations_are_rejected() {
    let credential = CredentialRecord {
        client_id: "0123abcd".into(),
        body: b"{\"grant\":1}".to_vec(),
    };
    let bytes = credential.encode();
    assert_eq!(CredentialRecord::decode(&bytes).unwrap(), credential);
    for cut in 0..bytes.len() {
        assert!(
            CredentialRecord::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn index_pages_know_their_encoded_length_without_encoding() {
    let names = |n: usize| -> Vec<String> { (0..n).map(|i| format!("näme-{i:04}")).collect() };
    let pages = [
        IndexPage::Leaf {
            low: None,
            high: None,
            names: Vec::new(),
        },
        IndexPage::Leaf {
            low: Some(String::new()),
            high: Some("zz".into()),
            names: names(3),
        },
        IndexPage::Leaf {
            low: Some("a".into()),
            high: None,
            names: names(200),
        },
        IndexPage::Inner {
            separators: Vec::new(),
            children: vec![7],
        },
        IndexPage::Inner {
            separators: names(50),
            children: (0..51).collect(),
        },
    ];
    for page in pages {
        let bytes = page.encode();
        assert_eq!(page.encoded_len(), bytes.len(), "{page:?}");
        assert_eq!(IndexPage::decode(&bytes).unwrap(), page);
    }
}

/// An entry of the bench's shape: a 10-byte name, a 100-byte value, the
/// store's TTL of an hour, written now.
fn typical_entry() -> EntryRecord {
    let now = 1_796_000_000_000;
    EntryRecord {
        key: "key-000042".into(),
        created: now,
        updated: now,
        expires: Some(now + 3_600_000),
        version: 1,
        ttl: Ttl::Fixed(3600),
        kind: ValueKind::String,
        value: vec![b'v'; 100],
    }
}

#[test]
fn entries_are_written_compact_and_entries_from_before_still_read() {
    let entry = typical_entry();
    let compact = entry.encode();
    let old = entry.encode_format_1();
    assert_eq!(old.len(), 169);
    assert_eq!(compact.len(), 128, "{compact:?}");
    assert_eq!(compact[0], 2);
    assert_eq!(EntryRecord::decode(&compact).unwrap(), entry);
    assert_eq!(EntryRecord::decode(&old).unwrap(), entry);
    // A time a millisecond behind the one before it (another host's clock)
    // costs no more than one equal to it.
    let behind = EntryRecord {
        updated: entry.created - 1,
        ..entry.clone()
    };
    assert_eq!(behind.encode().len(), compact.len());
    assert_eq!(EntryRecord::decode(&behind.encode()).unwrap(), behind);
    for cut in 0..old.len() {
        assert!(EntryRecord::decode(&old[..cut]).is_err(), "cut at {cut}");
    }
    // An unknown format, or a compact entry with a byte too many.
    let mut unknown = compact.clone();
    unknown[0] = 3;
    assert!(EntryRecord::decode(&unknown).is_err());
    let mut longer = compact.clone();
    longer.push(0);
    assert!(EntryRecord::decode(&longer).is_err());
}

#[test]
fn compact_entries_round_trip_at_the_edges_of_every_field() {
    let base = typical_entry();
    let times = [0, 1, 127, 128, 1 << 41, u64::MAX - 1, u64::MAX];
    let mut entries = Vec::new();
    for &created in &times {
        for &updated in &times {
            for expires in [None, Some(0), Some(updated), Some(u64::MAX), Some(created)] {
                entries.push(EntryRecord {
                    created,
                    updated,
                    expires,
                    ..base.clone()
                });
            }
        }
    }
    for ttl in [Ttl::Never, Ttl::Fixed(0), Ttl::Rolling(u64::MAX)] {
        for kind in [ValueKind::Binary, ValueKind::String, ValueKind::Number] {
            for version in [0, 1, u64::MAX] {
                entries.push(EntryRecord {
                    ttl,
                    kind,
                    version,
                    key: String::new(),
                    value: vec![7; 300],
                    ..base.clone()
                });
            }
        }
    }
    for entry in entries {
        let bytes = entry.encode();
        assert_eq!(EntryRecord::decode(&bytes).unwrap(), entry);
        for cut in 0..bytes.len() {
            assert!(EntryRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}

#[test]
fn a_compact_entry_with_a_bad_flag_or_number_is_malformed() {
    let entry = typical_entry();
    let good = entry.encode();
    // Flags: an unknown bit, value kind 3, TTL kind 3.
    for flags in [good[1] | 1 << 5, good[1] | 0b11, good[1] | 0b1100] {
        let mut bad = good.clone();
        bad[1] = flags;
        assert!(EntryRecord::decode(&bad).is_err(), "flags {flags:#b}");
    }
    // The name's length (a varint, at byte 2) spelt in more bytes than it
    // needs, or running past 10 bytes, or past u64.
    let with_len = |len: &[u8]| {
        let mut b = good[..2].to_vec();
        b.extend(len);
        b.extend(&good[3..]);
        b
    };
    assert_eq!(EntryRecord::decode(&with_len(&[10])).unwrap(), entry);
    assert!(EntryRecord::decode(&with_len(&[0x8a, 0x00])).is_err());
    assert!(EntryRecord::decode(&with_len(&[0x80; 11])).is_err());
    // The version (1, one byte, just before the value's length and its 100
    // bytes) spelt in 10 bytes: 1 + 2^63 fits a u64; one more bit would
    // not, and must not wrap around to 1.
    let version_at = good.len() - 102;
    assert_eq!(good[version_at], 1);
    let with_version = |version: &[u8]| {
        let mut b = good[..version_at].to_vec();
        b.extend(version);
        b.extend(&good[version_at + 1..]);
        b
    };
    let mut top_bit = vec![0x81];
    top_bit.extend([0x80; 8]);
    top_bit.push(0x01);
    let decoded = EntryRecord::decode(&with_version(&top_bit)).unwrap();
    assert_eq!(decoded.version, 1 + (1 << 63));
    *top_bit.last_mut().unwrap() = 0x03;
    assert!(EntryRecord::decode(&with_version(&top_bit)).is_err());
}

#[test]
fn index_pages_are_written_front_coded_and_pages_from_before_still_read() {
    let names: Vec<String> = (0..200).map(|i| format!("fill-{:08}", i * 7919)).collect();
    let leaf = IndexPage::Leaf {
        low: Some("fill-".into()),
        high: Some("fill-9".into()),
        names: names.clone(),
    };
    let inner = IndexPage::Inner {
        separators: names[..50].to_vec(),
        children: (0..51).map(|i| u64::MAX - i).collect(),
    };
    // 13-byte names in order share their first 8 to 10 bytes: a leaf of
    // them takes less than half its bytes of format 1; an inner page's
    // children take 8 bytes each in either.
    for (page, shrinks) in [(leaf, 2.0), (inner, 1.5)] {
        let compact = page.encode();
        let old = page.encode_format_1();
        assert_eq!(compact[0], 2);
        assert_eq!(IndexPage::decode(&compact).unwrap(), page);
        assert_eq!(IndexPage::decode(&old).unwrap(), page);
        for cut in 0..compact.len() {
            assert!(IndexPage::decode(&compact[..cut]).is_err(), "cut at {cut}");
        }
        let ratio = old.len() as f64 / compact.len() as f64;
        assert!(ratio > shrinks, "{} {}", compact.len(), old.len());
    }
}

#[test]
fn long_shared_prefixes_are_counted_and_bounded() {
    // Names sharing 200 bytes (a two-byte count), and 600 (of which a page
    // takes 255 from the name before, the most it takes).
    for shared in [200, 600] {
        let names: Vec<String> = (0..20)
            .map(|i| format!("{}{i:03}", "p".repeat(shared)))
            .collect();
        let page = IndexPage::Leaf {
            low: None,
            high: None,
            names,
        };
        let bytes = page.encode();
        assert_eq!(page.encoded_len(), bytes.len(), "sharing {shared}");
        assert_eq!(IndexPage::decode(&bytes).unwrap(), page);
    }
    // A page whose second name says it takes 256 bytes of the first is
    // refused, whatever the first is.
    let first = "q".repeat(300);
    let mut w = vec![2u8, 1, 0, 0, 2, 0, 0xac, 0x02];
    w.extend(first.as_bytes());
    w.extend([0x80, 0x02, 1, b'r']);
    assert!(IndexPage::decode(&w).is_err());
    let last = w.len() - 4;
    w[last..last + 2].copy_from_slice(&[0xff, 0x01]);
    assert_eq!(
        IndexPage::decode(&w).unwrap(),
        IndexPage::Leaf {
            low: None,
            high: None,
            names: vec![first.clone(), format!("{}r", &first[..255])],
        }
    );
}

#[test]
fn a_front_coded_name_that_borrows_too_much_or_splits_a_character_is_malformed() {
    let leaf = |names: &[&str]| IndexPage::Leaf {
        low: None,
        high: None,
        names: names.iter().map(|n| n.to_string()).collect(),
    };
    // Leaf: format, kind, no bounds, 2 names; "ab" whole, then "ac" as 1
    // shared byte and "c".
    let good = leaf(&["ab", "ac"]).encode();
    assert_eq!(good, [2, 1, 0, 0, 2, 0, 2, b'a', b'b', 1, 1, b'c']);
    let mut borrows = good.clone();
    borrows[9] = 3;
    assert!(IndexPage::decode(&borrows).is_err());
    // "è" and "é" are two bytes each and share the first: "é" is written
    // as that shared byte and its second; another second byte makes the
    // name invalid UTF-8.
    let accents = leaf(&["è", "é"]).encode();
    assert_eq!(IndexPage::decode(&accents).unwrap(), leaf(&["è", "é"]));
    let mut torn = accents.clone();
    let last = torn.len() - 1;
    torn[last] = b'x';
    assert!(IndexPage::decode(&torn).is_err());
    // Out of order after decoding is malformed too.
    let mut backwards = good.clone();
    backwards[11] = b'a';
    assert!(IndexPage::decode(&backwards).is_err());
}
