//! Pages of a listing and the cursors between them.
//!
//! A cursor is the last tag of a page followed by a MAC that binds it to its
//! listing (the scan's prefix), base64url. A client can neither forge one nor
//! use one of another partition: that would silently skip part of a listing.
//!
//! # Damage
//!
//! A listing that meets a record it cannot open, a key it cannot place, or
//! a backend answer out of key order (see `sealed`) fails with
//! [`Error::Integrity`] (503 on HTTP): it never answers a short page as if
//! it were whole. We chose an error over a page marked incomplete because
//! every client already handles an error, while a flag would be ignored
//! by every client written before it; `ostore check` says where the damage
//! is and `ostore repair` sets it aside, after which the listing is whole
//! again. Counts (a store's usage when first measured) follow the same
//! rule.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::encryption::{Sealer, TAG_LEN, Tag};

use super::Error;
use super::sealed::Scan;
use super::types::{MAX_PAGE_SIZE, Page};

/// Bytes of a cursor's check.
const CURSOR_CHECK_LEN: usize = 8;

fn cursor_check(sealer: &Sealer, prefix: &[u8], tag: &[u8]) -> [u8; CURSOR_CHECK_LEN] {
    let full = sealer.tag(b"cursor", prefix, tag);
    full[..CURSOR_CHECK_LEN].try_into().expect("check length")
}

pub(super) fn encode_cursor(sealer: &Sealer, prefix: &[u8], tag: &[u8]) -> String {
    let mut bytes = tag.to_vec();
    bytes.extend_from_slice(&cursor_check(sealer, prefix, tag));
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn decode_cursor(sealer: &Sealer, prefix: &[u8], cursor: &str) -> Result<Tag, Error> {
    let malformed = || Error::InvalidArgument("malformed cursor, or one of another listing".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    if bytes.len() != TAG_LEN + CURSOR_CHECK_LEN {
        return Err(malformed());
    }
    let (tag, check) = bytes.split_at(TAG_LEN);
    if check != cursor_check(sealer, prefix, tag) {
        return Err(malformed());
    }
    Ok(tag.try_into().expect("tag length"))
}

/// A guest- or client-chosen page size, clamped to 1..=[`MAX_PAGE_SIZE`]:
/// pages are built in memory.
pub(super) fn clamp_page_size(page_size: u32) -> usize {
    page_size.clamp(1, MAX_PAGE_SIZE) as usize
}

/// Collects one page of `scan`, from `cursor` on, decoding each record with
/// `decode` (which returns `None` for records to skip, such as expired
/// keys). Every record key of a listing ends in the tag the cursor holds.
pub(crate) async fn page<T>(
    sealer: &Sealer,
    scan: Scan<'_>,
    cursor: Option<&str>,
    page_size: u32,
    mut decode: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, Error>,
) -> Result<Page<T>, Error> {
    let want = clamp_page_size(page_size);
    let prefix = scan.prefix().to_vec();
    let resume = match cursor {
        Some(cursor) => {
            let tag = decode_cursor(sealer, &prefix, cursor)?;
            Some([prefix.as_slice(), &tag].concat())
        }
        None => None,
    };
    let mut scan = scan.resume_after(resume);
    let mut items = Vec::with_capacity(want.min(64));
    let mut last: Option<Vec<u8>> = None;
    loop {
        // Ask for one more than needed to learn whether another page exists.
        let ask = want - items.len() + 1;
        let chunk = scan.next_chunk_of(ask).await?;
        let exhausted = chunk.len() < ask;
        for (key, sealed) in chunk {
            if items.len() == want {
                let last = last.expect("a full page has a last key");
                return Ok(Page {
                    items,
                    cursor: Some(encode_cursor(
                        sealer,
                        &prefix,
                        &last[last.len() - TAG_LEN..],
                    )),
                });
            }
            if let Some(item) = decode(&key, &sealed)? {
                items.push(item);
            }
            last = Some(key);
        }
        if exhausted {
            return Ok(Page {
                items,
                cursor: None,
            });
        }
    }
}
