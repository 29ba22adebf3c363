//! The indexes of store and partition names: an application's stores, and
//! each store's partitions, in name order.
//!
//! They are the same B+tree as a partition's index of key names, with their
//! pages in the application's shard, beside the store and partition records
//! whose names they hold, so that the batch that writes or deletes such a
//! record changes its name too ([`commit_named`]).
//!
//! Unlike a partition's index, whose first use is marked by its kept counts
//! (`usage::kept`), these have nothing but their root to say they were
//! built: a change to one whose root is missing builds it first (from a
//! scan of the records, writing an empty leaf if there is no name) rather
//! than start an index that would lack the names written before it. So
//! data from before these indexes, or an index deleted with its store, is
//! indexed again on first use. A listing builds one only if there are
//! names to index: a listing of an empty scope writes nothing (so it works
//! on a full disk too), and reads a missing root as an empty index.

use crate::backend::{Batch, Expect};
use crate::encryption::Sealer;

use super::build::{has_root, write_tree};
use super::{
    IndexEdit, IndexLocks, Listed, NameWalk, Need, ROOT, Scope, decode_cursor, encode_cursor,
};
use crate::objectstore::keys::{Prefix, RecordKey};
use crate::objectstore::paging::clamp_page_size;
use crate::objectstore::record::{PartitionRecord, StoreRecord};
use crate::objectstore::sealed::{Commit, SealedTable};
use crate::objectstore::types::Page;
use crate::objectstore::{Error, MAX_CONFLICT_RETRIES};

/// Builds the index of `scope` (stores or partitions) from a scan of its
/// records if it has no root; for a listing ([`Need::Listing`]), only if
/// it has records. Takes the scope's lock only when it must; of two hosts
/// building at once, one's root lands and the other's pages are removed.
pub(crate) async fn ensure_names_built(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    scope: Scope,
    need: Need,
) -> Result<(), Error> {
    debug_assert!(scope.root_marks_built(), "{scope:?}");
    if has_root(table, scope).await? {
        return Ok(());
    }
    let _guard = locks.lock_scope(&scope).await;
    for _ in 0..MAX_CONFLICT_RETRIES {
        if has_root(table, scope).await? {
            return Ok(());
        }
        let names = scan_names(table, scope).await?;
        if names.is_empty() && need == Need::Listing {
            return Ok(());
        }
        tracing::info!(names = names.len(), "building an index of {}", what(scope));
        let root = Batch::new(scope.shard().encode());
        if write_tree(table, scope, &names, root).await? == Commit::Done {
            return Ok(());
        }
    }
    Err(Error::Contended("an index of names is"))
}

fn what(scope: Scope) -> &'static str {
    match scope {
        Scope::Keys(_) => "key names",
        Scope::Stores(_) => "store names",
        Scope::Partitions { .. } => "partition names",
    }
}

/// The names of the records `scope` indexes, in byte order. A record that
/// does not open is left out (`ostore check` reports it, and repair sets it
/// aside); one whose key is not of its kind is damage.
async fn scan_names(table: SealedTable<'_>, scope: Scope) -> Result<Vec<String>, Error> {
    let prefix = match scope {
        Scope::Stores(app) => Prefix::Stores(app),
        Scope::Partitions { app, store } => Prefix::Partitions { app, store },
        Scope::Keys(_) => unreachable!("a partition's keys are built with its counts"),
    };
    let mut names = Vec::new();
    let mut scan = table.scan(prefix);
    loop {
        let chunk = scan.next_chunk().await?;
        if chunk.is_empty() {
            break;
        }
        for (key, sealed) in chunk {
            let opened = match RecordKey::parse(&key) {
                Some(RecordKey::Store { .. }) => {
                    table.open::<StoreRecord>(&key, &sealed).map(|r| r.name)
                }
                Some(RecordKey::Partition(_)) => {
                    table.open::<PartitionRecord>(&key, &sealed).map(|r| r.name)
                }
                _ => {
                    tracing::warn!("cannot index a malformed store or partition key");
                    return Err(Error::Integrity);
                }
            };
            match opened {
                Ok(name) => names.push(name),
                Err(Error::Integrity) => tracing::warn!("indexing skips a damaged record"),
                Err(e) => return Err(e),
            }
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    names.dedup();
    Ok(names)
}

/// Commits `batch` (writes of records in the scope's shard) together with
/// `names` inserted into (`true`) or removed from the scope's index, in one
/// conditional batch. [`Commit::Conflict`]: a record or a page changed
/// since it was read; the caller reads again.
pub(crate) async fn commit_named(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    scope: Scope,
    names: &[(&str, bool)],
    mut batch: Batch,
) -> Result<Commit, Error> {
    ensure_names_built(table, locks, scope, Need::Writing).await?;
    let _guard = locks.lock_scope(&scope).await;
    let mut edit = IndexEdit::new(table, scope);
    for &(name, insert) in names {
        let step = if insert {
            edit.insert(name).await?
        } else {
            edit.remove(name).await?
        };
        // Also a missing root: deleted since it was built; build again.
        if step == Commit::Conflict {
            return Ok(Commit::Conflict);
        }
    }
    edit.finish(&mut batch);
    table.commit(batch).await
}

/// Deletes every page of the scope's index, the root last, so that an index
/// cut off half-way still has its root and is whole or reported by `ostore
/// check` (pages outside the tree), never an index missing pages that a
/// build would take as absent. An index without a root is built again on
/// first use.
pub(crate) async fn delete_names(table: SealedTable<'_>, scope: Scope) -> Result<(), Error> {
    let root = scope.page_key(ROOT);
    let mut scan = table.scan(scope.pages());
    loop {
        let chunk = scan.next_chunk().await?;
        if chunk.is_empty() {
            break;
        }
        let mut batch = Batch::new(scope.shard().encode());
        for (key, _) in chunk.into_iter().filter(|(k, _)| *k != root) {
            batch.delete(key, Expect::Any);
        }
        if !batch.is_empty() {
            table.commit_unconditional(batch).await?;
        }
    }
    let mut batch = Batch::new(scope.shard().encode());
    batch.delete(root, Expect::Any);
    table.commit_unconditional(batch).await
}

/// Deletes the scope's index and builds it again from its records
/// (`ostore repair`).
pub(crate) async fn rebuild_names(table: SealedTable<'_>, scope: Scope) -> Result<(), Error> {
    delete_names(table, scope).await?;
    let names = scan_names(table, scope).await?;
    let root = Batch::new(scope.shard().encode());
    match write_tree(table, scope, &names, root).await? {
        Commit::Done => Ok(()),
        // Another writer's root: a host is running beside the repair.
        Commit::Conflict => Err(Error::Contended("an index of names is")),
    }
}

/// One page of the records whose names the index of `scope` holds, in name
/// order, from a sealed cursor of the same scope on: each name is opened by
/// `open` (`None`: no record). Builds the index first if it has none. The
/// page size is clamped as every listing's is.
pub(crate) async fn page_of_names<T, F>(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    sealer: &Sealer,
    scope: Scope,
    cursor: Option<&str>,
    page_size: u32,
    mut open: impl FnMut(String) -> F,
) -> Result<Page<T>, Error>
where
    F: Future<Output = Result<Option<T>, Error>>,
{
    let after = cursor
        .map(|c| decode_cursor(sealer, scope, "", c))
        .transpose()?;
    ensure_names_built(table, locks, scope, Need::Listing).await?;
    let mut walk = NameWalk::new(table, scope, "", after);
    let (items, last) = walk
        .page(clamp_page_size(page_size), |names| {
            // Read one after another, in order, as each future is awaited.
            let opened: Vec<_> = names.into_iter().map(&mut open).collect();
            async move {
                let mut listed = Vec::with_capacity(opened.len());
                for item in opened {
                    listed.push(match item.await? {
                        Some(item) => Listed::Item(item),
                        None => Listed::Missing,
                    });
                }
                Ok(listed)
            }
        })
        .await?;
    Ok(Page {
        items,
        cursor: last.map(|last| encode_cursor(sealer, scope, "", &last)),
    })
}
