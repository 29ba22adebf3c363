//! Writing a whole index at once: for data from before the index (its
//! first use, which also begins the partition's kept counts), for `ostore
//! repair`, and its deletion with its partition.

use std::collections::HashMap;

use crate::backend::{Batch, Expect};

use super::{IndexLocks, PAGE_BYTES, ROOT, Scope, new_page_id, page_key};
use crate::objectstore::keys::{PartitionId, Prefix, RecordKey, Shard};
use crate::objectstore::record::{EntryRecord, IndexPage, name_len_after};
use crate::objectstore::sealed::{Commit, SealedTable};
use crate::objectstore::usage::kept::{self, Unfollowed};
use crate::objectstore::usage::{AppUsage, Counter, Counts, Slots};
use crate::objectstore::{Error, MAX_CONFLICT_RETRIES};

/// A page built from existing data is filled to half of [`PAGE_BYTES`], so
/// that the inserts that follow do not split every page at once.
pub(super) const BUILD_FILL: usize = PAGE_BYTES / 2;

/// Whether the scope's index exists (its root page does).
pub(super) async fn has_root(table: SealedTable<'_>, scope: Scope) -> Result<bool, Error> {
    table.exists(&scope.page(ROOT)).await
}

/// What a caller needs of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// To list it: an index of its names, if it holds any.
    Listing,
    /// To know its keys and bytes: kept counts, if it holds any key.
    Counts,
    /// To commit a counted write: kept counts, even of no key.
    Writing,
}

/// Makes the partition ready for `need` if it is not (data from before the
/// index or the kept counts, or a partition no one wrote yet): builds its
/// index and its counts' base from one scan of its entries. Takes the
/// partition's lock only when it must. A partition that holds nothing gets
/// nothing written but for a write: a listing writes nothing.
pub(crate) async fn ensure_built(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    usage: &AppUsage,
    partition: PartitionId,
    need: Need,
) -> Result<(), Error> {
    if kept::is_kept(table, partition).await?
        || (need == Need::Listing && has_root(table, Scope::Keys(partition)).await?)
    {
        return Ok(());
    }
    let _guard = locks.lock(&partition).await;
    ensure_built_locked(table, usage, partition, need).await
}

/// [`ensure_built`] for a caller that holds the partition's lock. The
/// base of the counts is the mark of a ready partition: it is written in
/// the batch that writes the index's root (or alone, when there is a root
/// already or no name to index), so one host's build wins and another's
/// fails and finds it done. See `usage::kept` for why the base counts each
/// key once even while hosts write. A base over keys or slots already there
/// changes the counts behind `usage`'s back: it loses track.
pub(crate) async fn ensure_built_locked(
    table: SealedTable<'_>,
    usage: &AppUsage,
    partition: PartitionId,
    need: Need,
) -> Result<(), Error> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        if kept::is_kept(table, partition).await? {
            return Ok(());
        }
        let root = has_root(table, Scope::Keys(partition)).await?;
        if need == Need::Listing && root {
            return Ok(());
        }
        let slots = Slots::read(table, partition).await?;
        let (names, measured) = scan_entries(table, partition).await?;
        if need != Need::Writing && measured.keys == 0 {
            return Ok(());
        }
        let mut last = Batch::new(Shard::Partition(partition).encode());
        // Once the base's commit is over (or dropped: it may land still),
        // if it counted keys or emptied slots. (`then`, not `then_some`: a
        // guard made and dropped at once would mark.)
        let _unfollowed = (measured.keys > 0 || slots.any()).then(|| Unfollowed(usage));
        slots.reset(table, partition, measured, &mut last);
        let outcome = if root {
            if measured.keys > 0 {
                tracing::info!(keys = measured.keys, "counting a partition's keys");
            }
            table.commit(last).await?
        } else {
            // Worth an operator's notice only for data from before the
            // index: a new partition's first key builds an empty one.
            if names.is_empty() {
                tracing::debug!("starting a new partition's index of key names");
            } else {
                tracing::info!(
                    keys = names.len(),
                    "building a partition's index of key names"
                );
            }
            write_tree(table, Scope::Keys(partition), &names, last).await?
        };
        if outcome == Commit::Done {
            return Ok(());
        }
    }
    Err(Error::Contended("the partition's index is"))
}

/// Makes the partition ready for a counted write by the holder of its lock
/// ([`ensure_built_locked`] for [`Need::Writing`]), unless this host's
/// last counted batch for it landed and its copy of its slot stands: the
/// base was there then, and a base goes only in a batch that empties or
/// deletes every slot, so the next batch, expecting the slot as copied,
/// would fail and find it out (see `kept::LastWritten`).
pub(crate) async fn ensure_countable(
    table: SealedTable<'_>,
    partition: PartitionId,
    counter: Counter<'_>,
    usage: &AppUsage,
) -> Result<(), Error> {
    if counter.counted_last(partition) {
        return Ok(());
    }
    ensure_built_locked(table, usage, partition, Need::Writing).await
}

/// The names of every entry of the partition that opens, in byte order,
/// and the keys and bytes of all its entries (those that do not open
/// too: they are at rest until deleted). Fails on a key that is no entry's.
async fn scan_entries(
    table: SealedTable<'_>,
    partition: PartitionId,
) -> Result<(Vec<String>, Counts), Error> {
    let mut names = Vec::new();
    let mut counts = Counts::default();
    let mut scan = table.scan(partition.entries());
    loop {
        let chunk = scan.next_chunk().await?;
        if chunk.is_empty() {
            break;
        }
        for (key, sealed) in chunk {
            // A count that leaves a record out would look whole: a
            // malformed key is reported instead (`ostore check` finds it,
            // `ostore repair` sets it aside).
            if !matches!(RecordKey::parse(&key), Some(RecordKey::Entry(_))) {
                tracing::warn!("cannot count a malformed entry key");
                return Err(Error::Integrity);
            }
            counts.keys += 1;
            counts.bytes += (key.len() + sealed.len()) as i64;
            match table.open::<EntryRecord>(&key, &sealed) {
                Ok(record) => names.push(record.key),
                // A damaged record's name is unknown: `ostore check`
                // reports the record, and repair sets it aside.
                Err(Error::Integrity) => tracing::warn!("indexing skips a damaged entry"),
                Err(e) => return Err(e),
            }
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    names.dedup();
    Ok((names, counts))
}

/// Pages of a tree holding `names` (sorted), bottom up; the last is the
/// root. Each is (id, page); the root's id is [`ROOT`].
pub(super) fn build_pages(names: &[String]) -> Vec<(u64, IndexPage)> {
    let mut pages = Vec::new();
    // Each node of the level being built: its id and its low bound.
    let mut level: Vec<(u64, Option<String>)> = Vec::new();
    let mut groups: Vec<&[String]> = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    // What each name takes in its leaf: front-coded after the one before
    // it, but for a leaf's first.
    let len_in_leaf = |i: usize, start: usize| {
        let previous = (i > start).then(|| names[i - 1].as_str());
        name_len_after(previous, &names[i])
    };
    for i in 0..names.len() {
        let mut len = len_in_leaf(i, start);
        if bytes + len > BUILD_FILL && i > start {
            groups.push(&names[start..i]);
            start = i;
            bytes = 0;
            len = len_in_leaf(i, start);
        }
        bytes += len;
    }
    groups.push(&names[start..]);
    for (g, group) in groups.iter().enumerate() {
        let low = (g > 0).then(|| group[0].clone());
        let high = groups.get(g + 1).map(|next| next[0].clone());
        let id = new_page_id();
        pages.push((
            id,
            IndexPage::Leaf {
                low: low.clone(),
                high,
                names: group.to_vec(),
            },
        ));
        level.push((id, low));
    }
    while level.len() > 1 {
        let mut next = Vec::new();
        let mut start = 0;
        while start < level.len() {
            let mut end = start + 1;
            let mut bytes = 0;
            while end < level.len() {
                let bounded = |i: usize| {
                    level[i]
                        .1
                        .as_deref()
                        .expect("only the first node is unbounded")
                };
                // A separator, front-coded after the one before it in the
                // page, and its child's 8-byte id.
                let previous = (end > start + 1).then(|| bounded(end - 1));
                let item = name_len_after(previous, bounded(end)) + 8;
                if bytes + item > BUILD_FILL && end - start >= 2 {
                    break;
                }
                bytes += item;
                end += 1;
            }
            let group = &level[start..end];
            let page = IndexPage::Inner {
                separators: group[1..]
                    .iter()
                    .map(|(_, low)| low.clone().expect("bounded"))
                    .collect(),
                children: group.iter().map(|(id, _)| *id).collect(),
            };
            let id = new_page_id();
            pages.push((id, page));
            next.push((id, group[0].1.clone()));
            start = end;
        }
        level = next;
    }
    let last = pages.len() - 1;
    pages[last].0 = ROOT;
    pages
}

/// Writes a tree of `names` where there is no root: the other pages first,
/// then the root in `last` (with whatever else it holds) expecting to be
/// absent; if that batch does not land (another writer's root got there
/// first, say), this tree's pages are removed again.
pub(super) async fn write_tree(
    table: SealedTable<'_>,
    scope: Scope,
    names: &[String],
    mut last: Batch,
) -> Result<Commit, Error> {
    // No names: no pages, for a partition. An absent root reads as an
    // empty tree, and the first key's batch writes it (expecting it
    // absent); so a listing of a partition no one wrote writes no page.
    // The other scopes write an empty root (theirs marks them built) when
    // a change needs one; a listing does not build them empty.
    if names.is_empty() && !scope.root_marks_built() {
        return if last.is_empty() {
            Ok(Commit::Done)
        } else {
            table.commit(last).await
        };
    }
    let shard = scope.shard().encode();
    let mut pages = build_pages(names);
    let root = pages.pop().expect("a tree has a root");
    for chunk in pages.chunks(64) {
        let mut batch = Batch::new(shard.clone());
        for (id, page) in chunk {
            let key = page_key(scope, *id);
            batch.put(key.clone(), table.seal(&key, page), Expect::Absent);
        }
        // A collision of random ids: the tree cannot be written as built.
        if table.commit(batch).await? == Commit::Conflict {
            return Err(Error::Contended("an index of names is"));
        }
    }
    let key = page_key(scope, ROOT);
    last.put(key.clone(), table.seal(&key, &root.1), Expect::Absent);
    let outcome = table.commit(last).await?;
    if outcome == Commit::Conflict {
        for chunk in pages.chunks(64) {
            let mut batch = Batch::new(shard.clone());
            for (id, _) in chunk {
                batch.delete(page_key(scope, *id), Expect::Any);
            }
            table.commit_unconditional(batch).await?;
        }
    }
    Ok(outcome)
}

/// Deletes the index pages under `prefix` (one partition's, or a store's
/// partitions') once their entries are deleted: a partition's pages go in
/// one batch, each expecting the bytes read, unless a name they hold is a
/// key's that is there. Such a key was created after its entry's deletion
/// pass (a write racing the deletion, which may survive it), and its batch
/// wrote its name: the partition keeps its index, as every batch that
/// writes an entry changes the index with it. A name left of a damaged
/// entry (deleted, its name unknown) keeps nothing. A page that does not
/// open keeps its index: what it holds is unknown (`ostore repair`
/// rebuilds it).
pub(crate) async fn delete_pages(table: SealedTable<'_>, prefix: Prefix) -> Result<(), Error> {
    /// One partition's pages as read.
    struct Pages {
        batch: Batch,
        names: Vec<String>,
        unreadable: bool,
    }
    let mut by_partition: HashMap<PartitionId, Pages> = HashMap::new();
    let mut scan = table.scan(prefix);
    loop {
        let chunk = scan.next_chunk().await?;
        if chunk.is_empty() {
            break;
        }
        for (key, sealed) in chunk {
            let Some(RecordKey::IndexPage { partition, .. }) = RecordKey::parse(&key) else {
                continue;
            };
            let pages = by_partition.entry(partition).or_insert_with(|| Pages {
                batch: Batch::new(Shard::Partition(partition).encode()),
                names: Vec::new(),
                unreadable: false,
            });
            match table.open::<IndexPage>(&key, &sealed) {
                Ok(IndexPage::Leaf { names, .. }) => pages.names.extend(names),
                Ok(IndexPage::Inner { .. }) => {}
                Err(Error::Integrity) => pages.unreadable = true,
                Err(e) => return Err(e),
            }
            pages.batch.delete(key, Expect::Value(sealed));
        }
    }
    for (partition, pages) in by_partition {
        if pages.unreadable || holds_any(table, partition, &pages.names).await? {
            continue;
        }
        // A conflict: a key came meanwhile, and the index stays whole.
        let _ = table.commit(pages.batch).await?;
    }
    Ok(())
}

/// Whether any of `names` is a key of the partition now.
async fn holds_any(
    table: SealedTable<'_>,
    partition: PartitionId,
    names: &[String],
) -> Result<bool, Error> {
    if names.is_empty() {
        return Ok(false);
    }
    let keys: Vec<Vec<u8>> = names
        .iter()
        .map(|name| RecordKey::Entry(partition.entry(table.sealer(), name)).encode())
        .collect();
    let shard = Shard::Partition(partition).encode();
    let found = table.backend().get_many(&shard, &keys).await?;
    Ok(found.iter().any(Option::is_some))
}

/// Deletes the partition's index and writes it again from its entries
/// (`ostore repair`).
pub(crate) async fn rebuild(table: SealedTable<'_>, partition: PartitionId) -> Result<(), Error> {
    let shard = Shard::Partition(partition).encode();
    let mut scan = table.scan(Prefix::PartitionIndex(partition));
    loop {
        let chunk = scan.next_chunk().await?;
        if chunk.is_empty() {
            break;
        }
        let mut batch = Batch::new(shard.clone());
        for (key, _) in chunk {
            batch.delete(key, Expect::Any);
        }
        table.commit_unconditional(batch).await?;
    }
    let (names, _) = scan_entries(table, partition).await?;
    let root = Batch::new(shard);
    match write_tree(table, Scope::Keys(partition), &names, root).await? {
        Commit::Done => Ok(()),
        // Another writer's root: a host is running beside the repair.
        Commit::Conflict => Err(Error::Contended("the partition's index is")),
    }
}
