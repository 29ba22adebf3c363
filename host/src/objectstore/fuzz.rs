//! What fuzzers drive: every decoder of bytes that come from storage (backend
//! keys, sealed records, their plaintext encodings) or from clients
//! (listing cursors). `fuzz/` runs [`decoders`] under libFuzzer; the corpus
//! it found is replayed by `cargo test` (`replays_the_fuzz_corpus`).
//!
//! Each decoder must refuse bad bytes with an error, never panic, and a
//! record it accepts must encode back to bytes that decode to the same
//! record.

use crate::encryption::Sealer;

use super::index::{self, Scope};
use super::keys::RecordKey;
use super::record::{
    AppRecord, CountsRecord, CredentialRecord, EntryRecord, IndexPage, MasterCheck,
    PartitionRecord, RateRecord, Record, StatsRecord, StoreRecord, StoreTombstone, UsageRecord,
};

/// Feeds `data` to every decoder. Panics only if a decoder does, or if an
/// accepted record does not survive encoding and decoding again.
pub fn decoders(data: &[u8]) {
    if let Some(key) = RecordKey::parse(data) {
        assert_eq!(RecordKey::parse(&key.encode()), Some(key));
        let _ = key.shard().encode();
    }
    round_trips::<EntryRecord>(data);
    round_trips::<IndexPage>(data);
    round_trips::<StoreRecord>(data);
    round_trips::<StoreTombstone>(data);
    round_trips::<PartitionRecord>(data);
    round_trips::<StatsRecord>(data);
    round_trips::<UsageRecord>(data);
    round_trips::<CountsRecord>(data);
    round_trips::<RateRecord>(data);
    round_trips::<CredentialRecord>(data);
    round_trips::<MasterCheck>(data);
    if let Ok(app) = AppRecord::decode(data) {
        assert!(AppRecord::decode(&app.encode()) == Ok(app));
    }
    let sealer = Sealer::new(&[7; 32], &[9; 32]);
    // Bytes read from storage, opened as a sealed record of some key.
    let _ = sealer.open(b"e-some-key", data);
    // A client's cursor, for a listing of some prefix.
    let cursor = String::from_utf8_lossy(data);
    let _ = index::decode_cursor(
        &sealer,
        Scope::Stores([3; crate::encryption::TAG_LEN]),
        "",
        &cursor,
    );
}

fn round_trips<R: Record + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(record) = R::decode(data) {
        assert_eq!(R::decode(&record.encode()).as_ref(), Ok(&record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::TAG_LEN;
    use crate::objectstore::keys::{EntryId, PartitionId};
    use crate::objectstore::record::RateLease;
    use crate::objectstore::types::{Ttl, ValueKind};

    /// Well-formed inputs of every decoder, to start the fuzzer from:
    /// `cargo test -p ostore --lib -- --ignored writes_the_seed_inputs`
    /// writes them into the corpus as `seed-*`.
    fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
        let tag = |n: u8| [n; TAG_LEN];
        let partition = PartitionId {
            app: tag(1),
            store: tag(2),
            partition: tag(3),
        };
        let entry_id = EntryId {
            partition,
            key: tag(4),
        };
        let entry = EntryRecord {
            key: "k€y".into(),
            created: 1,
            updated: 2,
            expires: Some(3),
            version: 4,
            ttl: Ttl::Rolling(60),
            kind: ValueKind::Number,
            value: b"42".to_vec(),
        };
        let leaf = IndexPage::Leaf {
            low: Some("k€y".into()),
            high: None,
            names: vec!["k€y".into(), "k€y-1".into(), "k€z".into()],
        };
        let inner = IndexPage::Inner {
            separators: vec!["b".into(), "ba".into()],
            children: vec![0, 1 << 40, u64::MAX],
        };
        let sealer = Sealer::new(&[7; 32], &[9; 32]);
        vec![
            ("key-entry", RecordKey::Entry(entry_id).encode()),
            ("key-expiry", RecordKey::expiry(5_000, entry_id).encode()),
            (
                "key-expiry-legacy",
                RecordKey::LegacyExpiry {
                    at: 5,
                    entry: entry_id,
                }
                .encode(),
            ),
            ("key-partition", RecordKey::Partition(partition).encode()),
            (
                "key-store",
                RecordKey::Store {
                    app: tag(1),
                    store: tag(2),
                }
                .encode(),
            ),
            ("key-master", RecordKey::MasterCheck.encode()),
            ("entry", entry.encode()),
            ("entry-format-1", entry.encode_format_1()),
            ("page-leaf", leaf.encode()),
            ("page-leaf-format-1", leaf.encode_format_1()),
            ("page-inner", inner.encode()),
            (
                "store",
                StoreRecord {
                    name: "s".into(),
                    default_ttl: Ttl::Fixed(9),
                    quota: Default::default(),
                }
                .encode(),
            ),
            (
                "tombstone",
                StoreTombstone {
                    name: "s".into(),
                    since_ms: 7,
                }
                .encode(),
            ),
            (
                "partition",
                PartitionRecord {
                    name: "p".into(),
                    ttl: Some(Ttl::Never),
                }
                .encode(),
            ),
            ("usage", UsageRecord { keys: -1, bytes: 9 }.encode()),
            (
                "counts",
                CountsRecord {
                    keys: -1,
                    bytes: 9,
                    seq: 3,
                }
                .encode(),
            ),
            (
                "rate",
                RateRecord {
                    level_milli: 5,
                    at_ms: 6,
                    leases: vec![RateLease {
                        at_ms: 1,
                        tokens: 2,
                    }],
                }
                .encode(),
            ),
            (
                "credential",
                CredentialRecord {
                    client_id: "c".into(),
                    body: b"{}".to_vec(),
                }
                .encode(),
            ),
            ("master", MasterCheck.encode()),
            ("sealed", sealer.seal(b"e-some-key", &entry.encode())),
            (
                "cursor",
                index::encode_cursor(&sealer, Scope::Stores([3; TAG_LEN]), "", "a-store")
                    .into_bytes(),
            ),
        ]
    }

    #[test]
    #[ignore = "writes files: run once to refresh the corpus's seeds"]
    fn writes_the_seed_inputs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decoders");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seed_inputs() {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }

    #[test]
    fn the_seed_inputs_decode() {
        for (name, bytes) in seed_inputs() {
            decoders(&bytes);
            let decodes = RecordKey::parse(&bytes).is_some()
                || EntryRecord::decode(&bytes).is_ok()
                || IndexPage::decode(&bytes).is_ok()
                || StoreRecord::decode(&bytes).is_ok()
                || PartitionRecord::decode(&bytes).is_ok()
                || UsageRecord::decode(&bytes).is_ok()
                || CountsRecord::decode(&bytes).is_ok()
                || RateRecord::decode(&bytes).is_ok()
                || CredentialRecord::decode(&bytes).is_ok()
                || StoreTombstone::decode(&bytes).is_ok()
                || MasterCheck::decode(&bytes).is_ok()
                || Sealer::new(&[7; 32], &[9; 32])
                    .open(b"e-some-key", &bytes)
                    .is_ok()
                || index::decode_cursor(
                    &Sealer::new(&[7; 32], &[9; 32]),
                    Scope::Stores([3; TAG_LEN]),
                    "",
                    &String::from_utf8_lossy(&bytes),
                )
                .is_ok();
            assert!(decodes, "seed {name} decodes as nothing");
        }
    }

    /// A bounded stand-in for the fuzzer that runs with every `cargo
    /// test`: each seed mutated 2,000 times (a byte changed, inserted or
    /// removed, the input cut short, in one to four steps), each mutant fed
    /// to every decoder, which must not panic and must round-trip what it
    /// accepts. Seeded, so a failure replays.
    #[test]
    fn mutated_seeds_never_panic_a_decoder() {
        let mut state = 0x5eed;
        let mut next = |below: usize| {
            (crate::backend::fault::splitmix64(&mut state) % below.max(1) as u64) as usize
        };
        for (_, seed) in seed_inputs() {
            for _ in 0..2_000 {
                let mut input = seed.clone();
                for _ in 0..1 + next(4) {
                    let at = next(input.len() + 1);
                    match next(4) {
                        0 if at < input.len() => input[at] = next(256) as u8,
                        1 => input.insert(at, next(256) as u8),
                        2 if at < input.len() => {
                            input.remove(at);
                        }
                        _ => input.truncate(at),
                    }
                }
                decoders(&input);
            }
        }
    }

    /// Every input the fuzzer kept (it covers a path no other input did),
    /// replayed on each `cargo test`.
    #[test]
    fn replays_the_fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decoders");
        let mut replayed = 0;
        for entry in std::fs::read_dir(&dir).expect("the fuzz corpus") {
            let path = entry.unwrap().path();
            decoders(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
        // At least the seeds, whatever the fuzzer added.
        let seeds = seed_inputs().len();
        assert!(
            replayed >= seeds,
            "{replayed} inputs in {}, fewer than the {seeds} seeds",
            dir.display()
        );
    }
}
