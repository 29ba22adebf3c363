//! Changes to one partition's index, read and gathered in memory, then
//! added to the batch that changes the entries.

use std::collections::HashMap;

use crate::backend::{Batch, Expect};

use super::Scope;
use super::{MAX_DEPTH, PAGE_BYTES, ROOT, covers, new_page_id, page_key};
use crate::objectstore::Error;
use crate::objectstore::record::{IndexPage, Record};
use crate::objectstore::sealed::{Commit, SealedTable};

/// A page as this edit knows it.
struct Slot {
    /// The sealed bytes it was read as (`None`: absent, or new).
    original: Option<Vec<u8>>,
    page: Option<IndexPage>,
    changed: bool,
}

/// A leaf as found on the way down to a name.
pub(super) struct Found {
    /// Each inner page passed, with the child taken.
    path: Vec<(u64, usize)>,
    id: u64,
    low: Option<String>,
    pub high: Option<String>,
    pub names: Vec<String>,
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

    /// The leaf at `id` as (low, high, names), an empty root if there is
    /// none yet; `None` if it is not a leaf covering `name` (read stale).
    fn leaf_for(
        &self,
        id: u64,
        name: &[u8],
    ) -> Option<(Option<String>, Option<String>, Vec<String>)> {
        match self.pages.get(&id).and_then(|s| s.page.clone()) {
            None if id == ROOT && self.empty_without_root => Some((None, None, Vec::new())),
            Some(IndexPage::Leaf { low, high, names }) if covers(&low, &high, name) => {
                Some((low, high, names))
            }
            _ => None,
        }
    }

    /// The leaf whose range holds `name`, read from the root down; `None`
    /// if a page on the way is gone or the leaf no longer covers `name`
    /// (read stale): read again.
    pub(super) async fn find_leaf(&mut self, name: &[u8]) -> Result<Option<Found>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
