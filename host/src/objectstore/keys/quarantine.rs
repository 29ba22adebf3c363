//! Keys that do not parse: where `ostore repair` sets their records aside,
//! and which shards such a key may be in, so that it can be deleted.

use super::parse::Fields;
use super::*;

/// Records `ostore repair` set aside (see `integrity`): kept under their
/// original key behind this byte, where no prefix the object store scans
/// reaches them, in one shard of their own.
const QUARANTINE: u8 = b'q';

/// The shard and key under which a damaged record at `original` is set
/// aside.
pub(crate) fn quarantine(original: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (
        [QUARANTINE].to_vec(),
        [&[QUARANTINE][..], original].concat(),
    )
}

/// The original key of a record set aside, if `key` is one.
pub(crate) fn quarantined(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&[QUARANTINE])
}

/// The shards a key that does not parse (damage at rest) may be in: the
/// one its leading bytes name, if they name one, and none (where the object
/// store writes such keys' deletions).
pub(crate) fn probable_shards(key: &[u8]) -> Vec<Vec<u8>> {
    let mut shards = Vec::new();
    if let Some((&kind, rest)) = key.split_first() {
        let mut f = Fields(rest);
        let shard = match kind {
            APP | STORE | PARTITION | STATS | USAGE | RATE_BUCKET | NAME_PAGE => {
                f.tag().map(Shard::App)
            }
            ENTRY | INDEX_PAGE | COUNTS => f.partition().map(Shard::Partition),
            EXPIRY | LEGACY_EXPIRY => f.u64().and_then(|_| f.partition()).map(Shard::Partition),
            CREDENTIAL => Some(Shard::Host),
            _ => None,
        };
        shards.extend(shard.map(|s| s.encode()));
    }
    shards.push(Vec::new());
    shards
}
