//! The ordered index of a partition's key names: a B+tree whose pages are
//! sealed records in the partition's shard, changed in the same conditional
//! batch as the entry they index.
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

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::backend::{Batch, Expect};
use crate::encryption::{Sealer, random_array};

use super::keys::{PartitionId, Prefix, RecordKey, Shard};
use super::record::{EntryRecord, IndexPage, Record};
use super::sealed::{Commit, SealedTable};
use super::{Error, MAX_CONFLICT_RETRIES};

/// The root's page id; every other page has a random one.
pub(crate) const ROOT: u64 = 0;

/// A page is split once its plaintext grows past this. Small pages keep a
/// batch's expectations (the old bytes of each page it changes) short on
/// Redis; names are at most 1,024 bytes, so a page that must split always
/// holds at least two.
const PAGE_BYTES: usize = 4096;

/// A page built from existing data is filled to half of [`PAGE_BYTES`], so
/// that the inserts that follow do not split every page at once.
const BUILD_FILL: usize = PAGE_BYTES / 2;

/// Deeper than any tree of 4 KiB pages can grow: a longer path is a cycle
/// of page ids (damage), not a tree.
const MAX_DEPTH: usize = 32;

/// Cursors pad the name they seal to a multiple of this, so that a cursor's
/// length says little of the name's.
const CURSOR_PAD: usize = 32;

/// Queues index changes of one partition within this host (see the module
/// doc). Striped by partition tag: two partitions may share a lock, which
/// only costs a little concurrency.
pub(crate) struct IndexLocks(Vec<tokio::sync::Mutex<()>>);

impl IndexLocks {
    pub fn new() -> Self {
        Self((0..256).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    pub async fn lock(&self, partition: &PartitionId) -> tokio::sync::MutexGuard<'_, ()> {
        // Partition tags are uniformly distributed.
        let stripe = u64::from_le_bytes(partition.partition[..8].try_into().expect("8 bytes"));
        self.0[stripe as usize % self.0.len()].lock().await
    }
}

fn page_key(partition: PartitionId, page: u64) -> Vec<u8> {
    RecordKey::IndexPage { partition, page }.encode()
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

/// A page as this edit knows it.
struct Slot {
    /// The sealed bytes it was read as (`None`: absent, or new).
    original: Option<Vec<u8>>,
    page: Option<IndexPage>,
    changed: bool,
}

/// A leaf as found on the way down to a name.
struct Found {
    /// Each inner page passed, with the child taken.
    path: Vec<(u64, usize)>,
    id: u64,
    low: Option<String>,
    high: Option<String>,
    names: Vec<String>,
}

/// Changes to one partition's index, gathered in memory and then added to
/// the batch that changes the entries.
pub(crate) struct IndexEdit<'a> {
    table: SealedTable<'a>,
    partition: PartitionId,
    pages: HashMap<u64, Slot>,
}

impl<'a> IndexEdit<'a> {
    pub fn new(table: SealedTable<'a>, partition: PartitionId) -> Self {
        Self {
            table,
            partition,
            pages: HashMap::new(),
        }
    }

    async fn load(&mut self, id: u64) -> Result<Option<&IndexPage>, Error> {
        if !self.pages.contains_key(&id) {
            let key = page_key(self.partition, id);
            let shard = Shard::Partition(self.partition).encode();
            let original = self.table.backend().get(&shard, &key).await?;
            let page = match &original {
                Some(sealed) => Some(self.table.open::<IndexPage>(&key, sealed)?),
                None => None,
            };
            self.pages.insert(
                id,
                Slot {
                    original,
                    page,
                    changed: false,
                },
            );
        }
        Ok(self.pages[&id].page.as_ref())
    }

    fn set(&mut self, id: u64, page: Option<IndexPage>) {
        let slot = self.pages.entry(id).or_insert(Slot {
            original: None,
            page: None,
            changed: false,
        });
        slot.page = page;
        slot.changed = true;
    }

    /// A page id not in use by this edit.
    fn fresh_id(&self) -> u64 {
        loop {
            let id = new_page_id();
            if !self.pages.contains_key(&id) {
                return id;
            }
        }
    }

    /// The path to the leaf whose range holds `name`: each inner page with
    /// the child taken, then the leaf's id. `None`: a page on the way is
    /// gone (read stale); read again.
    async fn descend(&mut self, name: &[u8]) -> Result<Option<(Vec<(u64, usize)>, u64)>, Error> {
        let mut path = Vec::new();
        let mut id = ROOT;
        loop {
            match self.load(id).await? {
                Some(IndexPage::Inner {
                    separators,
                    children,
                }) => {
                    let i = separators.partition_point(|s| s.as_bytes() <= name);
                    path.push((id, i));
                    id = children[i];
                }
                Some(IndexPage::Leaf { .. }) => return Ok(Some((path, id))),
                None if id == ROOT => return Ok(Some((path, id))),
                None => return Ok(None),
            }
            if path.len() > MAX_DEPTH {
                tracing::warn!("an index's pages form a cycle: the index is damaged");
                return Err(Error::Integrity);
            }
        }
    }

    /// The leaf at `id` as (low, high, names), an empty root if there is
    /// none yet; `None` if it is not a leaf covering `name` (read stale).
    fn leaf_for(
        &self,
        id: u64,
        name: &[u8],
    ) -> Option<(Option<String>, Option<String>, Vec<String>)> {
        match self.pages.get(&id).and_then(|s| s.page.clone()) {
            None if id == ROOT => Some((None, None, Vec::new())),
            Some(IndexPage::Leaf { low, high, names }) if covers(&low, &high, name) => {
                Some((low, high, names))
            }
            _ => None,
        }
    }

    /// The leaf whose range holds `name`, read from the root down; `None`
    /// if a page on the way is gone or the leaf no longer covers `name`
    /// (read stale): read again.
    async fn find_leaf(&mut self, name: &[u8]) -> Result<Option<Found>, Error> {
        let Some((path, id)) = self.descend(name).await? else {
            return Ok(None);
        };
        Ok(self.leaf_for(id, name).map(|(low, high, names)| Found {
            path,
            id,
            low,
            high,
            names,
        }))
    }

    /// Adds `name`; [`Commit::Conflict`] if the pages read are out of date
    /// (the whole change must be read again).
    pub async fn insert(&mut self, name: &str) -> Result<Commit, Error> {
        let key = name.as_bytes();
        let Some(Found {
            path,
            id: leaf,
            low,
            high,
            mut names,
        }) = self.find_leaf(key).await?
        else {
            return Ok(Commit::Conflict);
        };
        match names.binary_search_by(|n| n.as_bytes().cmp(key)) {
            Ok(_) => return Ok(Commit::Done),
            Err(at) => names.insert(at, name.to_string()),
        }
        self.set(leaf, Some(IndexPage::Leaf { low, high, names }));
        self.split_up(path, leaf);
        Ok(Commit::Done)
    }

    /// Splits the page at `id` while it is too big, and its parents in turn.
    fn split_up(&mut self, mut path: Vec<(u64, usize)>, mut id: u64) {
        loop {
            let page = self.pages[&id].page.clone().expect("a page just written");
            if page.encode().len() <= PAGE_BYTES {
                return;
            }
            let Some((left, separator, right)) = split(page) else {
                return;
            };
            if id == ROOT {
                // The root keeps its id: its halves move to new pages.
                let (a, b) = (self.fresh_id(), self.fresh_id());
                self.set(a, Some(left));
                self.set(b, Some(right));
                let root = IndexPage::Inner {
                    separators: vec![separator],
                    children: vec![a, b],
                };
                self.set(ROOT, Some(root));
                return;
            }
            let r = self.fresh_id();
            self.set(id, Some(left));
            self.set(r, Some(right));
            let (parent, i) = path.pop().expect("a page other than the root has a parent");
            let Some(IndexPage::Inner {
                mut separators,
                mut children,
            }) = self.pages[&parent].page.clone()
            else {
                unreachable!("the path holds inner pages")
            };
            separators.insert(i, separator);
            children.insert(i + 1, r);
            self.set(
                parent,
                Some(IndexPage::Inner {
                    separators,
                    children,
                }),
            );
            id = parent;
        }
    }

    /// Removes `name` if it is there; [`Commit::Conflict`] if the pages read
    /// are out of date. A leaf left empty leaves its parent (unless it is
    /// the only child), and its neighbour under that parent takes over its
    /// range, so that emptied leaves do not pile up on a listing's way.
    pub async fn remove(&mut self, name: &str) -> Result<Commit, Error> {
        let key = name.as_bytes();
        let Some(Found {
            path,
            id: leaf,
            low,
            high,
            mut names,
        }) = self.find_leaf(key).await?
        else {
            return Ok(Commit::Conflict);
        };
        let Ok(at) = names.binary_search_by(|n| n.as_bytes().cmp(key)) else {
            return Ok(Commit::Done);
        };
        names.remove(at);
        if names.is_empty()
            && let Some(&(parent, i)) = path.last()
        {
            let Some(IndexPage::Inner {
                mut separators,
                mut children,
            }) = self.pages[&parent].page.clone()
            else {
                unreachable!("the path holds inner pages")
            };
            if children.len() > 1 {
                let sibling = if i > 0 { children[i - 1] } else { children[1] };
                let Some(IndexPage::Leaf {
                    low: s_low,
                    high: s_high,
                    names: s_names,
                }) = self.load(sibling).await?.cloned()
                else {
                    return Ok(Commit::Conflict);
                };
                let merged = if i > 0 {
                    separators.remove(i - 1);
                    IndexPage::Leaf {
                        low: s_low,
                        high,
                        names: s_names,
                    }
                } else {
                    separators.remove(0);
                    IndexPage::Leaf {
                        low,
                        high: s_high,
                        names: s_names,
                    }
                };
                children.remove(i);
                self.set(sibling, Some(merged));
                self.set(
                    parent,
                    Some(IndexPage::Inner {
                        separators,
                        children,
                    }),
                );
                self.set(leaf, None);
                return Ok(Commit::Done);
            }
        }
        self.set(leaf, Some(IndexPage::Leaf { low, high, names }));
        Ok(Commit::Done)
    }

    /// Adds the edit's page writes to `batch` (of the partition's shard),
    /// each expecting the bytes it was read as.
    pub fn finish(self, batch: &mut Batch) {
        for (id, slot) in self.pages {
            if !slot.changed {
                continue;
            }
            let key = page_key(self.partition, id);
            let expect = match &slot.original {
                Some(sealed) => Expect::Value(sealed.clone()),
                None => Expect::Absent,
            };
            match slot.page {
                Some(page) => {
                    let sealed = self.table.seal(&key, &page);
                    batch.put(key, sealed, expect);
                }
                None if slot.original.is_some() => {
                    batch.delete(key, expect);
                }
                None => {}
            }
        }
    }
}

/// Splits a page in two halves and the separator between them; `None` if
/// it holds too little to split.
fn split(page: IndexPage) -> Option<(IndexPage, String, IndexPage)> {
    match page {
        IndexPage::Leaf {
            low,
            high,
            mut names,
        } => {
            if names.len() < 2 {
                return None;
            }
            let right = names.split_off(names.len() / 2);
            let separator = right[0].clone();
            Some((
                IndexPage::Leaf {
                    low,
                    high: Some(separator.clone()),
                    names,
                },
                separator.clone(),
                IndexPage::Leaf {
                    low: Some(separator),
                    high,
                    names: right,
                },
            ))
        }
        IndexPage::Inner {
            mut separators,
            mut children,
        } => {
            if separators.len() < 2 {
                return None;
            }
            let mid = separators.len() / 2;
            let right_separators = separators.split_off(mid + 1);
            let up = separators.pop().expect("mid + 1 separators left");
            let right_children = children.split_off(mid + 1);
            Some((
                IndexPage::Inner {
                    separators,
                    children,
                },
                up,
                IndexPage::Inner {
                    separators: right_separators,
                    children: right_children,
                },
            ))
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
    partition: PartitionId,
    name: &[u8],
) -> Result<Leaf, Error> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        let mut edit = IndexEdit::new(table, partition);
        if let Some(Found { names, high, .. }) = edit.find_leaf(name).await? {
            return Ok(Leaf { names, high });
        }
    }
    Err(Error::Contended("the partition's index is"))
}

/// Whether the partition's index exists (its root page does).
async fn is_built(table: SealedTable<'_>, partition: PartitionId) -> Result<bool, Error> {
    let shard = Shard::Partition(partition).encode();
    Ok(table
        .backend()
        .get(&shard, &page_key(partition, ROOT))
        .await?
        .is_some())
}

/// Builds the partition's index if it has none (data written before the
/// index existed). Takes the partition's lock only when it must build.
pub(crate) async fn ensure_built(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    partition: PartitionId,
) -> Result<(), Error> {
    if is_built(table, partition).await? {
        return Ok(());
    }
    let _guard = locks.lock(&partition).await;
    ensure_built_locked(table, partition).await
}

/// [`ensure_built`] for a caller that holds the partition's lock.
pub(crate) async fn ensure_built_locked(
    table: SealedTable<'_>,
    partition: PartitionId,
) -> Result<(), Error> {
    if is_built(table, partition).await? {
        return Ok(());
    }
    let names = entry_names(table, partition).await?;
    // Worth an operator's notice only for data from before the index: a
    // new partition's first key builds an empty one.
    if names.is_empty() {
        tracing::debug!("starting a new partition's index of key names");
    } else {
        tracing::info!(
            keys = names.len(),
            "building a partition's index of key names"
        );
    }
    write_tree(table, partition, &names).await
}

/// The names of every entry of the partition that opens, in byte order.
async fn entry_names(table: SealedTable<'_>, partition: PartitionId) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut scan = table.scan(partition.entries());
    loop {
        let chunk = scan.next_chunk().await?;
        if chunk.is_empty() {
            break;
        }
        for (key, sealed) in chunk {
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
    Ok(names)
}

/// Pages of a tree holding `names` (sorted), bottom up; the last is the
/// root. Each is (id, page); the root's id is [`ROOT`].
pub(crate) fn build_pages(names: &[String]) -> Vec<(u64, IndexPage)> {
    let mut pages = Vec::new();
    // Each node of the level being built: its id and its low bound.
    let mut level: Vec<(u64, Option<String>)> = Vec::new();
    let mut groups: Vec<&[String]> = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, name) in names.iter().enumerate() {
        if bytes + name.len() + 8 > BUILD_FILL && i > start {
            groups.push(&names[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += name.len() + 8;
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
                let separator = level[end]
                    .1
                    .as_ref()
                    .expect("only the first node is unbounded");
                if bytes + separator.len() + 16 > BUILD_FILL && end - start >= 2 {
                    break;
                }
                bytes += separator.len() + 16;
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
/// the root last expecting to be absent; if another writer's root got
/// there first, this one's pages are removed again.
async fn write_tree(
    table: SealedTable<'_>,
    partition: PartitionId,
    names: &[String],
) -> Result<(), Error> {
    // No names: no pages. An absent root reads as an empty tree, and the
    // first key's batch writes it (expecting it absent); so a listing of a
    // partition no one wrote writes nothing.
    if names.is_empty() {
        return Ok(());
    }
    let shard = Shard::Partition(partition).encode();
    let mut pages = build_pages(names);
    let root = pages.pop().expect("a tree has a root");
    for chunk in pages.chunks(64) {
        let mut batch = Batch::new(shard.clone());
        for (id, page) in chunk {
            let key = page_key(partition, *id);
            batch.put(key.clone(), table.seal(&key, page), Expect::Absent);
        }
        // A collision of random ids: the tree cannot be written as built.
        if table.commit(batch).await? == Commit::Conflict {
            return Err(Error::Contended("the partition's index is"));
        }
    }
    let key = page_key(partition, ROOT);
    let mut batch = Batch::new(shard.clone());
    batch.put(key.clone(), table.seal(&key, &root.1), Expect::Absent);
    if table.commit(batch).await? == Commit::Conflict {
        for chunk in pages.chunks(64) {
            let mut batch = Batch::new(shard.clone());
            for (id, _) in chunk {
                batch.delete(page_key(partition, *id), Expect::Any);
            }
            table.commit_unconditional(batch).await?;
        }
    }
    Ok(())
}

/// Deletes every index page under `prefix` (one partition's, or a store's
/// partitions'), once their entries are gone: one batch per partition, each
/// page expecting the bytes read, so that a key created meanwhile (its
/// batch changed a page) keeps its index whole.
pub(crate) async fn delete_pages(table: SealedTable<'_>, prefix: Prefix) -> Result<(), Error> {
    let mut by_partition: HashMap<PartitionId, Batch> = HashMap::new();
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
            by_partition
                .entry(partition)
                .or_insert_with(|| Batch::new(Shard::Partition(partition).encode()))
                .delete(key, Expect::Value(sealed));
        }
    }
    for (_, batch) in by_partition {
        // A conflict leaves that partition's index as it is: whole.
        let _ = table.commit(batch).await?;
    }
    Ok(())
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
    let names = entry_names(table, partition).await?;
    write_tree(table, partition, &names).await
}

/// Every name of a tree, in order, from its pages as read (`ostore
/// check`); `Err` says how the tree is broken.
pub(crate) fn names_of(pages: &HashMap<u64, Option<IndexPage>>) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Pages to visit, with the range their parent gives them.
    let mut stack: Vec<(u64, Option<String>, Option<String>, usize)> = vec![(ROOT, None, None, 0)];
    while let Some((id, low, high, depth)) = stack.pop() {
        if depth > MAX_DEPTH || !seen.insert(id) {
            return Err("its pages form a cycle".into());
        }
        match pages.get(&id) {
            None => return Err(format!("page {id:016x} is missing")),
            Some(None) => return Err(format!("page {id:016x} does not open")),
            Some(Some(IndexPage::Leaf {
                low: l,
                high: h,
                names: n,
            })) => {
                if *l != low || *h != high {
                    return Err(format!(
                        "leaf {id:016x} holds another range than its parent gives it"
                    ));
                }
                names.extend(n.iter().cloned());
            }
            Some(Some(IndexPage::Inner {
                separators,
                children,
            })) => {
                let bounds: Vec<Option<String>> = std::iter::once(low.clone())
                    .chain(separators.iter().cloned().map(Some))
                    .chain(std::iter::once(high.clone()))
                    .collect();
                // Visited left to right: pushed right to left.
                for (i, child) in children.iter().enumerate().rev() {
                    stack.push((*child, bounds[i].clone(), bounds[i + 1].clone(), depth + 1));
                }
            }
        }
    }
    if names.windows(2).any(|w| w[0].as_bytes() >= w[1].as_bytes()) {
        return Err("its names are out of order".into());
    }
    let orphans = pages.len() - seen.len();
    if orphans > 0 {
        return Err(format!("{orphans} of its pages are in no tree"));
    }
    Ok(names)
}

fn cursor_context(partition: PartitionId, prefix: &str) -> Vec<u8> {
    let mut aad = b"ostore index cursor".to_vec();
    aad.extend_from_slice(&partition.entries().encode());
    aad.extend_from_slice(&(prefix.len() as u64).to_be_bytes());
    aad.extend_from_slice(prefix.as_bytes());
    aad
}

/// A cursor after `name`: the name sealed (padded with NULs, which no name
/// holds), bound to the partition and prefix of its listing, so that it
/// shows nothing of the name but a rounded length, and cannot be forged or
/// used in another listing.
pub(crate) fn encode_cursor(
    sealer: &Sealer,
    partition: PartitionId,
    prefix: &str,
    name: &str,
) -> String {
    let mut plain = name.as_bytes().to_vec();
    plain.resize(name.len().div_ceil(CURSOR_PAD).max(1) * CURSOR_PAD, 0);
    URL_SAFE_NO_PAD.encode(sealer.seal(&cursor_context(partition, prefix), &plain))
}

/// The name a cursor of [`encode_cursor`] resumes after.
pub(crate) fn decode_cursor(
    sealer: &Sealer,
    partition: PartitionId,
    prefix: &str,
    cursor: &str,
) -> Result<String, Error> {
    let malformed = || Error::InvalidArgument("malformed cursor, or one of another listing".into());
    let sealed = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    let mut plain = sealer
        .open(&cursor_context(partition, prefix), &sealed)
        .map_err(|_| malformed())?;
    while plain.last() == Some(&0) {
        plain.pop();
    }
    String::from_utf8(plain).map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("name-{i:06}")).collect();
        v.sort();
        v
    }

    #[test]
    fn a_built_tree_holds_every_name_in_order_with_ranges_that_fit() {
        for n in [0, 1, 5, 300, 20_000] {
            let expected = names(n);
            let pages: HashMap<u64, Option<IndexPage>> = build_pages(&expected)
                .into_iter()
                .map(|(id, page)| (id, Some(page)))
                .collect();
            assert_eq!(names_of(&pages).unwrap(), expected, "{n} names");
            for page in pages.values().flatten() {
                assert!(page.encode().len() <= PAGE_BYTES, "{n} names");
            }
        }
    }

    #[test]
    fn a_tree_with_a_missing_page_or_a_shuffled_leaf_is_reported() {
        let mut pages: HashMap<u64, Option<IndexPage>> = build_pages(&names(2_000))
            .into_iter()
            .map(|(id, page)| (id, Some(page)))
            .collect();
        let leaf = *pages
            .iter()
            .find(|(_, p)| matches!(p, Some(IndexPage::Leaf { .. })))
            .unwrap()
            .0;
        let mut missing = pages.clone();
        missing.remove(&leaf);
        assert!(names_of(&missing).unwrap_err().contains("missing"));
        if let Some(Some(IndexPage::Leaf { low, .. })) = pages.get_mut(&leaf) {
            *low = Some("zzz".into());
        }
        assert!(names_of(&pages).unwrap_err().contains("range"));
    }

    #[test]
    fn pages_split_into_halves_around_their_separator() {
        let leaf = IndexPage::Leaf {
            low: Some("a".into()),
            high: None,
            names: vec!["b".into(), "c".into(), "d".into()],
        };
        let (left, separator, right) = split(leaf).unwrap();
        assert_eq!(separator, "c");
        assert_eq!(
            left,
            IndexPage::Leaf {
                low: Some("a".into()),
                high: Some("c".into()),
                names: vec!["b".into()]
            }
        );
        assert_eq!(
            right,
            IndexPage::Leaf {
                low: Some("c".into()),
                high: None,
                names: vec!["c".into(), "d".into()]
            }
        );
        let inner = IndexPage::Inner {
            separators: vec!["b".into(), "c".into(), "d".into()],
            children: vec![1, 2, 3, 4],
        };
        let (left, up, right) = split(inner).unwrap();
        assert_eq!(up, "c");
        assert_eq!(
            left,
            IndexPage::Inner {
                separators: vec!["b".into()],
                children: vec![1, 2]
            }
        );
        assert_eq!(
            right,
            IndexPage::Inner {
                separators: vec!["d".into()],
                children: vec![3, 4]
            }
        );
    }
}
