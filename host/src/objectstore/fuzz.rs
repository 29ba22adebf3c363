//! What fuzzers drive: every decoder of bytes that come from storage (backend
//! keys, sealed records, their plaintext encodings) or from clients
//! (listing cursors). `fuzz/` runs [`decoders`] under libFuzzer; the corpus
//! it found is replayed by `cargo test` (`replays_the_fuzz_corpus`).
//!
//! Each decoder must refuse bad bytes with an error, never panic, and a
//! record it accepts must encode back to bytes that decode to the same
//! record.

use crate::encryption::Sealer;

use super::keys::RecordKey;
use super::paging;
use super::record::{
    AppRecord, CredentialRecord, EntryRecord, MasterCheck, PartitionRecord, RateRecord, Record,
    StatsRecord, StoreRecord, StoreTombstone, UsageRecord,
};

/// Feeds `data` to every decoder. Panics only if a decoder does, or if an
/// accepted record does not survive encoding and decoding again.
pub fn decoders(data: &[u8]) {
    if let Some(key) = RecordKey::parse(data) {
        assert_eq!(RecordKey::parse(&key.encode()), Some(key));
        let _ = key.shard().encode();
    }
    round_trips::<EntryRecord>(data);
    round_trips::<StoreRecord>(data);
    round_trips::<StoreTombstone>(data);
    round_trips::<PartitionRecord>(data);
    round_trips::<StatsRecord>(data);
    round_trips::<UsageRecord>(data);
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
    let _ = paging::decode_cursor(&sealer, b"eprefix", &cursor);
}

fn round_trips<R: Record + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(record) = R::decode(data) {
        assert_eq!(R::decode(&record.encode()).as_ref(), Ok(&record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            replayed >= 100,
            "only {replayed} inputs in {}",
            dir.display()
        );
    }
}
