//! Changes to one partition's index, read and gathered in memory, then
//! added to the batch that changes the entries.

use std::collections::HashMap;

use crate::backend::{Batch, Expect};

use super::Scope;
use super::{Leaf, MAX_DEPTH, PAGE_BYTES, ROOT, covers, new_page_id, page_key};
use crate::objectstore::Error;
use crate::objectstore::record::{
    IndexPage, PAGE_HEAD, bound_len, name_len_after, name_lens, var_len,
};
use crate::objectstore::sealed::{Commit, SealedTable};

/// A page as this edit knows it.
struct Slot {
    /// The sealed bytes it was read as (`None`: absent, or new).
    original: Option<Vec<u8>>,
    page: Option<IndexPage>,
    changed: bool,
}

/// Changes to one index, gathered in memory and then added to the batch
/// that changes the records it indexes.
pub(crate) struct IndexEdit<'a> {
    table: SealedTable<'a>,
    scope: Scope,
    pages: HashMap<u64, Slot>,
    /// Whether a missing root reads as an empty index. A change to an
    /// index whose root marks it built must find the root: otherwise it
    /// would start an index that lacks the names written before it.
    empty_without_root: bool,
}

impl<'a> IndexEdit<'a> {
    /// An edit that changes the index of `scope`.
    pub fn new(table: SealedTable<'a>, scope: Scope) -> Self {
        Self {
            table,
            scope,
            pages: HashMap::new(),
            empty_without_root: !scope.root_marks_built(),
        }
    }

    /// An edit that only reads.
    pub(super) fn reading(table: SealedTable<'a>, scope: Scope) -> Self {
        Self {
            empty_without_root: true,
            ..Self::new(table, scope)
        }
    }

    async fn load(&mut self, id: u64) -> Result<Option<&IndexPage>, Error> {
        if !self.pages.contains_key(&id) {
            let key = page_key(self.scope, id);
            let shard = self.scope.shard().encode();
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

    /// The leaf whose range holds `name`, read from the root down and
    /// taken out of this edit (one that only reads); `None` if a page on
    /// the way is gone or the leaf no longer covers `name` (read stale):
    /// read again.
    pub(super) async fn take_leaf(&mut self, name: &[u8]) -> Result<Option<Leaf>, Error> {
        let Some((_, id)) = self.descend(name).await? else {
            return Ok(None);
        };
        Ok(match self.leaf_mut(id, name).and_then(|s| s.page.take()) {
            Some(IndexPage::Leaf { names, high, .. }) => Some(Leaf { names, high }),
            _ => None,
        })
    }

    /// The leaf at `id` if it covers `name`, to change in place: a missing
    /// root reads as an empty leaf where this edit allows it. `None`: it
    /// is not a leaf covering `name` (read stale).
    fn leaf_mut(&mut self, id: u64, name: &[u8]) -> Option<&mut Slot> {
        let empty_root = id == ROOT && self.empty_without_root;
        let slot = self.pages.entry(id).or_insert(Slot {
            original: None,
            page: None,
            changed: false,
        });
        if slot.page.is_none() && empty_root {
            slot.page = Some(IndexPage::Leaf {
                low: None,
                high: None,
                names: Vec::new(),
            });
        }
        match &slot.page {
            Some(IndexPage::Leaf { low, high, .. }) if covers(low, high, name) => Some(slot),
            _ => None,
        }
    }

    /// The separators and children of the inner page at `id`, on a path
    /// just read, to change in place (the page is marked changed).
    fn inner_mut(&mut self, id: u64) -> (&mut Vec<String>, &mut Vec<u64>) {
        let slot = self.pages.get_mut(&id).expect("the path's pages are read");
        slot.changed = true;
        match &mut slot.page {
            Some(IndexPage::Inner {
                separators,
                children,
            }) => (separators, children),
            _ => unreachable!("the path holds inner pages"),
        }
    }

    /// Adds `name`; [`Commit::Conflict`] if the pages read are out of date
    /// (the whole change must be read again), and then nothing is changed.
    pub async fn insert(&mut self, name: &str) -> Result<Commit, Error> {
        let key = name.as_bytes();
        let Some((path, leaf)) = self.descend(key).await? else {
            return Ok(Commit::Conflict);
        };
        let Some(slot) = self.leaf_mut(leaf, key) else {
            return Ok(Commit::Conflict);
        };
        let Some(IndexPage::Leaf { names, .. }) = &mut slot.page else {
            unreachable!("leaf_mut finds leaves")
        };
        let Err(at) = names.binary_search_by(|n| n.as_bytes().cmp(key)) else {
            return Ok(Commit::Done);
        };
        names.insert(at, name.to_string());
        slot.changed = true;
        self.split_up(path, leaf);
        Ok(Commit::Done)
    }

    /// Splits the page at `id` (just changed) while it is too big, and its
    /// parents in turn. Each page is changed where it lies: only a split's
    /// right part is a new page.
    fn split_up(&mut self, mut path: Vec<(u64, usize)>, mut id: u64) {
        loop {
            let slot = self.pages.get_mut(&id).expect("a page just written");
            let page = slot.page.as_mut().expect("a page just written");
            if page.encoded_len() <= PAGE_BYTES {
                return;
            }
            let Some((separator, right)) = split_off(page) else {
                return;
            };
            if id == ROOT {
                // The root keeps its id: its two parts move to new pages.
                let left = slot.page.take();
                let (a, b) = (self.fresh_id(), self.fresh_id());
                self.set(a, left);
                self.set(b, Some(right));
                let root = IndexPage::Inner {
                    separators: vec![separator],
                    children: vec![a, b],
                };
                self.set(ROOT, Some(root));
                return;
            }
            let r = self.fresh_id();
            self.set(r, Some(right));
            let (parent, i) = path.pop().expect("a page other than the root has a parent");
            let (separators, children) = self.inner_mut(parent);
            separators.insert(i, separator);
            children.insert(i + 1, r);
            id = parent;
        }
    }

    /// Removes `name` if it is there; [`Commit::Conflict`] if the pages read
    /// are out of date, and then nothing is changed. A leaf left empty
    /// leaves its parent (unless it is the only child), and its neighbour
    /// under that parent takes over its range, so that emptied leaves do
    /// not pile up on a listing's way.
    pub async fn remove(&mut self, name: &str) -> Result<Commit, Error> {
        let key = name.as_bytes();
        let Some((path, leaf)) = self.descend(key).await? else {
            return Ok(Commit::Conflict);
        };
        let Some(slot) = self.leaf_mut(leaf, key) else {
            return Ok(Commit::Conflict);
        };
        let Some(IndexPage::Leaf { names, .. }) = &slot.page else {
            unreachable!("leaf_mut finds leaves")
        };
        let Ok(at) = names.binary_search_by(|n| n.as_bytes().cmp(key)) else {
            return Ok(Commit::Done);
        };
        let emptied = names.len() == 1;
        // The neighbour that takes over an emptied leaf's range: read
        // before anything changes, as reading it may find the edit stale.
        let neighbour = match path.last() {
            Some(&(parent, i)) if emptied => match &self.pages[&parent].page {
                Some(IndexPage::Inner { children, .. }) if children.len() > 1 => {
                    Some((parent, i, if i > 0 { children[i - 1] } else { children[1] }))
                }
                Some(IndexPage::Inner { .. }) => None,
                _ => unreachable!("the path holds inner pages"),
            },
            _ => None,
        };
        let Some((parent, i, sibling)) = neighbour else {
            let slot = self.pages.get_mut(&leaf).expect("the leaf was just read");
            if let Some(IndexPage::Leaf { names, .. }) = &mut slot.page {
                names.remove(at);
            }
            slot.changed = true;
            return Ok(Commit::Done);
        };
        if !matches!(self.load(sibling).await?, Some(IndexPage::Leaf { .. })) {
            return Ok(Commit::Conflict);
        }
        let Some(IndexPage::Leaf { low, high, .. }) =
            self.pages.get_mut(&leaf).and_then(|s| s.page.take())
        else {
            unreachable!("the leaf was just read")
        };
        self.set(leaf, None);
        let (separators, children) = self.inner_mut(parent);
        separators.remove(i.saturating_sub(1));
        children.remove(i);
        let slot = self
            .pages
            .get_mut(&sibling)
            .expect("the neighbour was just read");
        let Some(IndexPage::Leaf {
            low: s_low,
            high: s_high,
            ..
        }) = &mut slot.page
        else {
            unreachable!("the neighbour was just read as a leaf")
        };
        // The neighbour on the left takes the range up to the emptied
        // leaf's high end, the one on the right from its low end.
        if i > 0 {
            *s_high = high;
        } else {
            *s_low = low;
        }
        slot.changed = true;
        Ok(Commit::Done)
    }

    /// Adds the edit's page writes to `batch` (of the scope's shard),
    /// each expecting the bytes it was read as.
    pub fn finish(self, batch: &mut Batch) {
        for (id, slot) in self.pages {
            if !slot.changed {
                continue;
            }
            let key = page_key(self.scope, id);
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

/// Splits a page in two: the new page, holding the right part, and the
/// separator that goes up to the parent; `None` if the page is too small
/// to split. Pages split in halves, but for the last leaf of the tree,
/// which keeps three quarters: names created in order (a sequence, a bulk
/// load) all arrive there, and the left part of its split is then never
/// written again but for names that come a little late (from concurrent
/// writers), for which a quarter is left. Halves would leave every leaf
/// behind such inserts half empty.
fn split_off(page: &mut IndexPage) -> Option<(String, IndexPage)> {
    match page {
        IndexPage::Leaf { low, high, names } => {
            if names.len() < 2 {
                return None;
            }
            let quarters = if high.is_none() { 3 } else { 2 };
            let at = leaf_split_point(low.as_deref(), high.as_deref(), names, quarters);
            let right = names.split_off(at);
            let separator = right[0].clone();
            let right_high = high.replace(separator.clone());
            Some((
                separator.clone(),
                IndexPage::Leaf {
                    low: Some(separator),
                    high: right_high,
                    names: right,
                },
            ))
        }
        IndexPage::Inner {
            separators,
            children,
        } => {
            if separators.len() < 2 {
                return None;
            }
            let mid = separators.len() / 2;
            let right_separators = separators.split_off(mid + 1);
            let up = separators.pop().expect("mid + 1 separators left");
            let right_children = children.split_off(mid + 1);
            Some((
                up,
                IndexPage::Inner {
                    separators: right_separators,
                    children: right_children,
                },
            ))
        }
    }
}

/// Where a leaf of two names or more splits: after about `quarters`
/// fourths of its names' bytes (names differ in length, up to 1,024 bytes),
/// moved while a part would not fit a page and the other part has room
/// for the name moved. Either part keeps a name. Lengths are those of the
/// compact page, whose names are front-coded: each part's first name is
/// written whole, each other one after the name before it.
fn leaf_split_point(
    low: Option<&str>,
    high: Option<&str>,
    names: &[String],
    quarters: usize,
) -> usize {
    let n = names.len();
    // `after[i]`: what names[..i] take, each after the one before it.
    let mut after = Vec::with_capacity(n + 1);
    after.push(0);
    for len in name_lens(names) {
        after.push(after[after.len() - 1] + len);
    }
    let whole = |i: usize| name_len_after(None, &names[i]);
    // A leaf's bytes besides its names: the format byte, the kind, the
    // count and its bounds; each part is bounded by the separator too.
    let head = |bound: Option<&str>, other: Option<&str>, count: usize| {
        PAGE_HEAD + bound_len(bound) + bound_len(other) + var_len(count as u64)
    };
    let left_len = |at: usize| head(low, Some(&names[at]), at) + after[at];
    let right_len =
        |at: usize| head(Some(&names[at]), high, n - at) + whole(at) + after[n] - after[at + 1];
    let target = after[n] * quarters / 4;
    let mut at = 0;
    while at < n && after[at + 1] <= target {
        at += 1;
    }
    let mut at = at.clamp(1, n - 1);
    while at > 1 && left_len(at) > PAGE_BYTES && right_len(at - 1) <= PAGE_BYTES {
        at -= 1;
    }
    while at < n - 1 && right_len(at) > PAGE_BYTES && left_len(at + 1) <= PAGE_BYTES {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of one length created in order, the last leaf splitting each
    /// time it overflows: every page left behind fits, for short names and
    /// for names near the 1,024-byte limit (where splitting by count put
    /// more than a page's bytes in the left part).
    #[test]
    fn pages_left_behind_by_names_in_order_fit_whatever_the_names_length() {
        for len in [10, 100, 500, 809, 900, 1_013, 1_024] {
            let mut last = IndexPage::Leaf {
                low: None,
                high: None,
                names: Vec::new(),
            };
            let mut full = 0;
            for i in 0..1_000 {
                let name = format!("{i:04}{}", "n".repeat(len - 4));
                if let IndexPage::Leaf { names, .. } = &mut last {
                    names.push(name);
                }
                if last.encoded_len() > PAGE_BYTES {
                    let (_, right) = split_off(&mut last).unwrap();
                    assert!(last.encoded_len() <= PAGE_BYTES, "names of {len} bytes");
                    assert!(right.encoded_len() <= PAGE_BYTES, "names of {len} bytes");
                    full += last.encoded_len();
                    last = right;
                }
            }
            assert!(full > 0, "names of {len} bytes split");
        }
    }

    /// Leaves that fit, made to overflow by one more name, of random
    /// lengths up to the 1,024-byte limit and long shared prefixes (a
    /// two-letter alphabet): whenever a split exists whose two parts fit,
    /// the split taken is one. The parts' lengths are front-coded, each
    /// part's first name written whole: a model that front-codes the right
    /// part's first name too (as if it still followed its neighbour) takes
    /// a split whose right part is over a page for some of these.
    #[test]
    fn a_leaf_that_overflows_by_one_name_splits_into_parts_that_fit() {
        let mut state = 0x5b17;
        let mut next =
            |below: usize| (crate::backend::fault::splitmix64(&mut state) % below as u64) as usize;
        let lens = [1, 3, 20, 130, 300, 600, 900, 1_000, 1_020, 1_024];
        let leaf = |low: Option<&str>, high: Option<&str>, names: &[String]| IndexPage::Leaf {
            low: low.map(String::from),
            high: high.map(String::from),
            names: names.to_vec(),
        };
        let mut tried = 0;
        for _ in 0..20_000 {
            let mut names: Vec<String> = (0..2 + next(14))
                .map(|_| {
                    let (len, varied) = (lens[next(lens.len())], 1 + next(4));
                    let tail = if next(2) == 0 { 'x' } else { 'y' };
                    (0..len)
                        .map(|i| match (i < varied, next(2)) {
                            (true, 0) => 'a',
                            (true, _) => 'b',
                            (false, _) => tail,
                        })
                        .collect()
                })
                .collect();
            names.sort();
            names.dedup();
            let (low, high) = ([None, Some("a")][next(2)], [None, Some("c")][next(2)]);
            let fits = |names: &[String], at: usize| {
                leaf(low, Some(&names[at]), &names[..at]).encoded_len() <= PAGE_BYTES
                    && leaf(Some(&names[at]), high, &names[at..]).encoded_len() <= PAGE_BYTES
            };
            let overflows_by_one = leaf(low, high, &names).encoded_len() > PAGE_BYTES
                && (0..names.len()).any(|r| {
                    let mut fewer = names.clone();
                    fewer.remove(r);
                    leaf(low, high, &fewer).encoded_len() <= PAGE_BYTES
                });
            if names.len() < 2 || !overflows_by_one || !(1..names.len()).any(|at| fits(&names, at))
            {
                continue;
            }
            tried += 1;
            let quarters = if high.is_none() { 3 } else { 2 };
            let at = leaf_split_point(low, high, &names, quarters);
            assert!(fits(&names, at), "split at {at} of {names:?}");
        }
        assert!(tried > 1_000, "{tried} leaves tried");
    }

    /// Names of very different lengths: both parts of a split fit when
    /// some split point makes them.
    #[test]
    fn a_leaf_of_names_of_mixed_lengths_splits_into_parts_that_fit() {
        let mut names: Vec<String> = (0..9).map(|i| format!("a{i}")).collect();
        names.extend((0..4).map(|i| format!("b{i}{}", "x".repeat(1_022))));
        for high in [None, Some("c".to_string())] {
            let mut page = IndexPage::Leaf {
                low: None,
                high: high.clone(),
                names: names.clone(),
            };
            assert!(page.encoded_len() > PAGE_BYTES);
            let (_, right) = split_off(&mut page).unwrap();
            assert!(page.encoded_len() <= PAGE_BYTES, "high {high:?}");
            assert!(right.encoded_len() <= PAGE_BYTES, "high {high:?}");
        }
    }

    #[test]
    fn pages_split_around_their_separator_in_halves_but_the_last_leaf() {
        let mut left = IndexPage::Leaf {
            low: Some("a".into()),
            high: Some("z".into()),
            names: vec!["b".into(), "c".into(), "d".into()],
        };
        let (separator, right) = split_off(&mut left).unwrap();
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
                high: Some("z".into()),
                names: vec!["c".into(), "d".into()]
            }
        );
        // The tree's last leaf keeps three quarters.
        let names: Vec<String> = ["b", "c", "d", "e", "f", "g", "h", "i"]
            .map(String::from)
            .into();
        let mut last = IndexPage::Leaf {
            low: Some("a".into()),
            high: None,
            names: names.clone(),
        };
        let (separator, right) = split_off(&mut last).unwrap();
        assert_eq!(separator, "h");
        assert_eq!(
            last,
            IndexPage::Leaf {
                low: Some("a".into()),
                high: Some("h".into()),
                names: names[..6].to_vec()
            }
        );
        assert_eq!(
            right,
            IndexPage::Leaf {
                low: Some("h".into()),
                high: None,
                names: names[6..].to_vec()
            }
        );
        let mut left = IndexPage::Inner {
            separators: vec!["b".into(), "c".into(), "d".into()],
            children: vec![1, 2, 3, 4],
        };
        let (up, right) = split_off(&mut left).unwrap();
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

    #[test]
    fn a_page_too_small_to_split_is_left_whole() {
        let one_name = IndexPage::Leaf {
            low: None,
            high: Some("z".into()),
            names: vec!["a".repeat(1024)],
        };
        let mut page = one_name.clone();
        assert!(split_off(&mut page).is_none());
        assert_eq!(page, one_name);
        let one_separator = IndexPage::Inner {
            separators: vec!["m".into()],
            children: vec![1, 2],
        };
        let mut page = one_separator.clone();
        assert!(split_off(&mut page).is_none());
        assert_eq!(page, one_separator);
    }
}
