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
