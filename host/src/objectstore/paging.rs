//! Pages of a listing. Every listing (keys, partitions, stores) goes
//! through an index of names, in name order, with sealed cursors bound to
//! its scope (`index::cursor`).
//!
//! # Damage
//!
//! A listing that meets a record it cannot open, a key it cannot place, or
//! a backend answer out of key order (see `sealed`) fails with
//! [`Error::Integrity`](super::Error::Integrity) (503 on HTTP): it never answers a short page as if
//! it were whole. We chose an error over a page marked incomplete because
//! every client already handles an error, while a flag would be ignored
//! by every client written before it; `ostore check` says where the damage
//! is and `ostore repair` sets it aside, after which the listing is whole
//! again. Counts (a store's usage when first measured) follow the same
//! rule.

use super::types::MAX_PAGE_SIZE;

/// A guest- or client-chosen page size, clamped to 1..=[`MAX_PAGE_SIZE`]:
/// pages are built in memory.
pub(super) fn clamp_page_size(page_size: u32) -> usize {
    page_size.clamp(1, MAX_PAGE_SIZE) as usize
}
