//! The ordered index of a partition's key names: a B+tree whose pages are
//! sealed records in the partition's shard, changed in the same conditional
//! batch as the entry they index. The same tree orders an application's
//! store names and each store's partition names, with pages in the
//! application's shard ([`Scope`], and `names` for what differs).
//!
//! Entries are kept under HMAC tags of their names, so their own order says
//! nothing of the names' order. The index gives the order back without
//! giving the names away: each page (a leaf of sorted names, or an inner
//! page of separators and child page ids) is sealed like every other record,
//! under a random page id (the root is page 0). Listing in name order and
//! seeking a prefix read the root-to-leaf path and then the leaves in turn:
//! O(log N + matches) page reads.
//!
//! # What changes the index
//!
//! Creating a key inserts its name, deleting it (by a client, the expiry
//! sweep, clearing a partition, deleting a store) removes it, in the batch
//! that writes the entry. Overwriting an existing key leaves the index
//! alone, so that the common write touches one leaf at most when it must.
//! An expired key stays in the index until the sweep deletes it; listings
//! skip it, as they did before.
//!
//! # Concurrency
//!
//! Every page a batch changes is written with an [`Expect`] of the bytes it
//! was read as (a new page expects to be absent), and every leaf holds its
//! range `[low, high)`: a writer or reader that reached a leaf through a
//! parent read a moment before checks the leaf still covers its name, and
//! reads again if not. So correctness across hosts comes from the batches
//! alone. Within a host, [`IndexLocks`] queue the index changes of one
//! partition, so that 64 writers creating keys in one partition wait their
//! turn instead of failing each other's batches on the same leaf.
//!
//! # Data written before the index
//!
//! A partition without a root page has never been indexed, or holds no
//! key (the two need no telling apart: an index of no entries is empty).
//! Its first use
//! after the upgrade (a listing, or a write that creates or deletes a key)
//! builds the index from a scan of its entries, under the partition's lock,
//! writing the root last with `Expect::Absent`, so that of two hosts
//! building at once one wins and the other's pages are removed.
//! `ostore repair` rebuilds an index that `ostore check` finds wrong.

use std::collections::HashMap;

use crate::encryption::random_array;

use crate::encryption::Tag;

use super::keys::{PartitionId, Prefix, RecordKey, Shard};
use super::record::IndexPage;
use super::sealed::SealedTable;
use super::{Error, MAX_CONFLICT_RETRIES};

mod build;
mod check;
mod cursor;
mod edit;
mod names;
mod queue;
mod walk;

pub(crate) use build::{Need, delete_pages, ensure_built, ensure_countable, rebuild};
pub(crate) use check::{ReadPage, check_tree};
pub(crate) use cursor::{decode_cursor, encode_cursor};
pub(crate) use edit::IndexEdit;
pub(crate) use names::{commit_named, delete_names, page_of_names, rebuild_names};
pub(crate) use queue::{IndexLocks, NameChange};
pub(crate) use walk::{Listed, NameWalk};

/// The root's page id; every other page has a random one.
pub(crate) const ROOT: u64 = 0;

/// A page is split once its plaintext grows past this. Small pages keep a
/// batch's expectations (the old bytes of each page it changes) short on
/// Redis; names are at most 1,024 bytes, so a page that must split always
/// holds at least two.
const PAGE_BYTES: usize = 4096;

/// Deeper than any tree of 4 KiB pages can grow: a longer path is a cycle
/// of page ids (damage), not a tree.
const MAX_DEPTH: usize = 32;

/// What one index orders: the keys of a partition, the stores of an
/// application, or the partitions of a store. Each index lives in the shard
/// of the records whose names it holds, so that one batch changes a record
/// and its name together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// A partition's key names: pages in the partition's shard.
    Keys(PartitionId),
    /// An application's store names: pages in the application's shard.
    Stores(Tag),
    /// A store's partition names: pages in the application's shard.
    Partitions { app: Tag, store: Tag },
}

impl Scope {
    /// The record key of the scope's page `page`.
    pub fn page(&self, page: u64) -> RecordKey {
        match *self {
            Scope::Keys(partition) => RecordKey::IndexPage { partition, page },
            Scope::Stores(app) => RecordKey::NamePage {
                app,
                store: None,
                page,
            },
            Scope::Partitions { app, store } => RecordKey::NamePage {
                app,
                store: Some(store),
                page,
            },
        }
    }

    /// The backend key of the scope's page `page`.
    pub fn page_key(&self, page: u64) -> Vec<u8> {
        self.page(page).encode()
    }

    /// The shard of the scope's pages (and of the records they index).
    pub fn shard(&self) -> Shard {
        match *self {
            Scope::Keys(partition) => Shard::Partition(partition),
            Scope::Stores(app) | Scope::Partitions { app, .. } => Shard::App(app),
        }
    }

    /// The prefix of every page of the scope, and of no other scope's.
    pub fn pages(&self) -> Prefix {
        match *self {
            Scope::Keys(partition) => Prefix::PartitionIndex(partition),
            Scope::Stores(app) => Prefix::NamePages { app, store: None },
            Scope::Partitions { app, store } => Prefix::NamePages {
                app,
                store: Some(store),
            },
        }
    }

    /// The tag that picks the scope's stripe of [`IndexLocks`].
    pub(super) fn stripe_tag(&self) -> &Tag {
        match self {
            Scope::Keys(partition) => &partition.partition,
            Scope::Stores(app) => app,
            Scope::Partitions { store, .. } => store,
        }
    }

    /// Whether a missing root means "never built" rather than "empty". A
    /// partition's first key writes its root and its first use builds it
    /// under the kept counts' mark (`usage::kept`); the indexes of store
    /// and partition names have no such mark, so building one always
    /// writes a root, empty or not, and a change to one whose root is
    /// missing builds it first.
    fn root_marks_built(&self) -> bool {
        !matches!(self, Scope::Keys(_))
    }
}

fn page_key(scope: Scope, page: u64) -> Vec<u8> {
    scope.page_key(page)
}

fn covers(low: &Option<String>, high: &Option<String>, name: &[u8]) -> bool {
    low.as_ref().is_none_or(|l| l.as_bytes() <= name)
        && high.as_ref().is_none_or(|h| name < h.as_bytes())
}

/// A random page id other than the root's. A collision with a page in use
/// makes the batch's `Expect::Absent` fail, and the change is retried.
fn new_page_id() -> u64 {
    loop {
        let id = u64::from_be_bytes(random_array());
        if id != ROOT {
            return id;
        }
    }
}

/// One leaf, as a listing reads it.
pub(crate) struct Leaf {
    pub names: Vec<String>,
    /// Where the next leaf starts; `None` for the last.
    pub high: Option<String>,
}

/// The leaf whose range holds `name`, reading again (from the root) while
/// a concurrent change makes the path read stale.
pub(crate) async fn leaf_covering(
    table: SealedTable<'_>,
    scope: Scope,
    name: &[u8],
) -> Result<Leaf, Error> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        // A reader takes a missing root for an empty index, whatever the
        // scope: the one it built a moment ago was deleted since (with its
        // store, say), and so were the records it held.
        let mut edit = IndexEdit::reading(table, scope);
        if let Some(leaf) = edit.take_leaf(name).await? {
            return Ok(leaf);
        }
    }
    Err(Error::Contended("the partition's index is"))
}

/// Every name of a tree, in order, from its pages as read (`ostore
/// check`, for the small indexes of store and partition names); `Err` says
/// how the tree is broken.
pub(crate) async fn names_of(
    pages: &HashMap<u64, Option<IndexPage>>,
) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let read = async |ids: &[u64]| {
        Ok::<_, std::convert::Infallible>(ids.iter().map(|id| pages.get(id).cloned()).collect())
    };
    let Ok(shape) = check_tree(pages.len(), read, |name| names.push(name.to_string())).await;
    shape.map(|()| names)
}

#[cfg(test)]
mod tests {
    use super::build::build_pages;
    use super::*;
    use crate::objectstore::record::Record;

    fn names(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("name-{i:06}")).collect();
        v.sort();
        v
    }

    fn read_pages(n: usize) -> HashMap<u64, Option<IndexPage>> {
        build_pages(&names(n))
            .into_iter()
            .map(|(id, page)| (id, Some(page)))
            .collect()
    }

    #[tokio::test]
    async fn a_built_tree_holds_every_name_in_order_with_ranges_that_fit() {
        for n in [0, 1, 5, 300, 20_000] {
            let pages = read_pages(n);
            assert_eq!(names_of(&pages).await.unwrap(), names(n), "{n} names");
            for page in pages.values().flatten() {
                assert!(page.encode().len() <= PAGE_BYTES, "{n} names");
            }
        }
    }

    /// A tree built from existing names fills its pages to half of one,
    /// as front-coded (a model counting each name whole would fill them to
    /// a fraction of that): every page but the last of each level holds
    /// within a name and a child's id of half a page.
    #[test]
    fn a_built_tree_fills_its_pages_to_half_of_one() {
        let pages = build_pages(&names(100_000));
        let levels = 3;
        let underfilled = (pages.iter())
            .filter(|(_, page)| page.encoded_len() < build::BUILD_FILL - 32)
            .count();
        assert!(pages.len() > 100, "{} pages", pages.len());
        assert!(
            underfilled <= levels,
            "{underfilled} of {} pages",
            pages.len()
        );
    }

    #[tokio::test]
    async fn a_tree_with_a_missing_page_or_a_shuffled_leaf_is_reported() {
        let mut pages = read_pages(2_000);
        let leaf = *pages
            .iter()
            .find(|(_, p)| matches!(p, Some(IndexPage::Leaf { .. })))
            .unwrap()
            .0;
        let mut missing = pages.clone();
        missing.remove(&leaf);
        assert!(names_of(&missing).await.unwrap_err().contains("missing"));
        let mut unopened = pages.clone();
        unopened.insert(leaf, None);
        assert!(
            names_of(&unopened)
                .await
                .unwrap_err()
                .contains("does not open")
        );
        if let Some(Some(IndexPage::Leaf { low, .. })) = pages.get_mut(&leaf) {
            *low = Some("zzz".into());
        }
        assert!(names_of(&pages).await.unwrap_err().contains("range"));
    }

    #[tokio::test]
    async fn names_out_of_order_a_cycle_and_a_page_in_no_tree_are_reported() {
        let pages = read_pages(2_000);
        let leaves: Vec<u64> = (pages.iter())
            .filter(|(_, p)| matches!(p, Some(IndexPage::Leaf { .. })))
            .map(|(id, _)| *id)
            .collect();
        // Two names of one leaf swapped.
        let mut swapped = pages.clone();
        if let Some(Some(IndexPage::Leaf { names, .. })) = swapped.get_mut(&leaves[0]) {
            names.swap(0, 1);
        }
        assert!(
            names_of(&swapped)
                .await
                .unwrap_err()
                .contains("out of order")
        );
        // The last name of a leaf equal to the first of the next one (each
        // leaf in order by itself).
        let mut repeated = pages.clone();
        let (first, next) = {
            let all = names_of(&pages).await.unwrap();
            let mut leaf_names: Vec<&Vec<String>> = (pages.values().flatten())
                .filter_map(|p| match p {
                    IndexPage::Leaf { names, .. } => Some(names),
                    IndexPage::Inner { .. } => None,
                })
                .collect();
            leaf_names.sort_by_key(|names| names[0].clone());
            let at = all.iter().position(|n| *n == leaf_names[1][0]).unwrap();
            (all[at - 1].clone(), leaf_names[1][0].clone())
        };
        for page in repeated.values_mut().flatten() {
            if let IndexPage::Leaf { names, .. } = page
                && names[0] == next
            {
                names[0] = first.clone();
            }
        }
        assert!(
            names_of(&repeated)
                .await
                .unwrap_err()
                .contains("out of order")
        );
        // An inner page that names itself as a child.
        let mut cycle = pages.clone();
        if let Some(Some(IndexPage::Inner { children, .. })) = cycle.get_mut(&ROOT) {
            children[1] = ROOT;
        }
        assert!(names_of(&cycle).await.unwrap_err().contains("cycle"));
        // A page that no parent names.
        let mut orphan = pages.clone();
        orphan.insert(7, pages[&leaves[0]].clone());
        assert!(
            names_of(&orphan)
                .await
                .unwrap_err()
                .contains("1 of its pages")
        );
    }

    /// The check reads the root, then each inner page's children in one
    /// read: it never needs the whole tree at once.
    #[tokio::test]
    async fn the_tree_check_reads_one_inner_pages_children_at_a_time() {
        // Front-coded, a built leaf holds about 500 of these names, and an
        // inner page about 150 leaves: enough names for two inner pages.
        const NAMES: usize = 100_000;
        let pages = read_pages(NAMES);
        let inner = (pages.values().flatten())
            .filter(|p| matches!(p, IndexPage::Inner { .. }))
            .count();
        assert!(inner > 1, "{inner} inner pages");
        let mut reads = Vec::new();
        let read = async |ids: &[u64]| {
            reads.push(ids.len());
            Ok::<_, ()>(ids.iter().map(|id| pages.get(id).cloned()).collect())
        };
        let mut count = 0;
        let shape = check_tree(pages.len(), read, |_| count += 1).await.unwrap();
        assert_eq!(shape, Ok(()));
        assert_eq!(count, NAMES);
        assert_eq!(
            reads.len(),
            1 + inner,
            "the root, then one read per inner page"
        );
        assert_eq!(
            reads.iter().sum::<usize>(),
            pages.len(),
            "each page read once"
        );
    }
}
