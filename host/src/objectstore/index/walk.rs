//! Reading an index in order: the names from a point on, leaf by leaf.

use std::collections::VecDeque;

use super::{Scope, leaf_covering};
use crate::objectstore::Error;
use crate::objectstore::sealed::SealedTable;

/// The names of one index that start with a prefix, in byte order, after
/// a point (a cursor's name), read leaf by leaf as they are asked for: a
/// listing costs O(log N + page) page reads, and a walk whose names leave
/// the prefix stops without reading the leaf after.
pub(crate) struct NameWalk<'a> {
    table: SealedTable<'a>,
    scope: Scope,
    prefix: String,
    /// Where the next leaf is sought; `None` once no further leaf can hold
    /// a name of the prefix.
    seek: Option<String>,
    /// The name the walk starts after (a cursor's), not listed again.
    after: Option<String>,
    /// Names read and not yet taken, all of the prefix.
    ready: VecDeque<String>,
}

impl<'a> NameWalk<'a> {
    /// The names that start with `prefix` and sort after `after` (all of
    /// the prefix's if `None`).
    pub fn new(table: SealedTable<'a>, scope: Scope, prefix: &str, after: Option<String>) -> Self {
        let seek = match &after {
            Some(a) if a.as_str() > prefix => a.clone(),
            _ => prefix.to_string(),
        };
        Self {
            table,
            scope,
            prefix: prefix.to_string(),
            seek: Some(seek),
            after,
            ready: VecDeque::new(),
        }
    }

    /// The next name, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<String>, Error> {
        loop {
            if let Some(name) = self.ready.pop_front() {
                return Ok(Some(name));
            }
            let Some(seek) = self.seek.take() else {
                return Ok(None);
            };
            let leaf = leaf_covering(self.table, self.scope, seek.as_bytes()).await?;
            let after = self.after.as_deref();
            // Every name from `seek` on that is not of the prefix sorts
            // after all of the prefix's: the first such ends the walk.
            let mut left_prefix = false;
            for name in leaf.names {
                if name.as_bytes() < seek.as_bytes() || Some(name.as_str()) == after {
                    continue;
                }
                if !name.starts_with(&self.prefix) {
                    left_prefix = true;
                    break;
                }
                self.ready.push_back(name);
            }
            // The next leaf starts at `high`, which sorts after `seek` and
            // so after the prefix: if it is not of the prefix, neither is
            // anything the next leaves hold.
            self.seek = leaf
                .high
                .filter(|high| !left_prefix && high.starts_with(&self.prefix));
        }
    }

    /// Up to `count` further names: fewer only at the end.
    pub async fn take(&mut self, count: usize) -> Result<Vec<String>, Error> {
        let mut names = Vec::with_capacity(count.min(1024));
        while names.len() < count {
            match self.next().await? {
                Some(name) => names.push(name),
                None => break,
            }
        }
        Ok(names)
    }

    /// Whether a further name follows, without taking it.
    pub async fn has_more(&mut self) -> Result<bool, Error> {
        match self.next().await? {
            Some(name) => {
                self.ready.push_front(name);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One page of up to `want` items, from the walk's names, the names a
    /// page still needs at a time: `open` makes each batch of names (a
    /// copy, which its future owns) into what they list, one per name, in
    /// order. Also the page's last name
    /// when the page is full and a further name follows: where the next
    /// page resumes (a cursor).
    pub async fn page<T, F>(
        &mut self,
        want: usize,
        mut open: impl FnMut(Vec<String>) -> F,
    ) -> Result<(Vec<T>, Option<String>), Error>
    where
        F: Future<Output = Result<Vec<Listed<T>>, Error>>,
    {
        let mut items = Vec::with_capacity(want.min(64));
        loop {
            let need = want - items.len();
            let names = self.take(need).await?;
            for (name, listed) in names.iter().zip(open(names.clone()).await?) {
                match listed {
                    Listed::Item(item) => items.push(item),
                    Listed::Skipped => {}
                    // Deleted since its leaf was read, or damage: an index
                    // and its records change in one batch, so a name that
                    // stays without its record means the record was lost
                    // (or moved, as a flipped bit in its key moves it). A
                    // listing never answers short as if whole.
                    Listed::Missing => {
                        if self.holds(name).await? {
                            tracing::warn!("an index of names lists a name without its record");
                            return Err(Error::Integrity);
                        }
                    }
                }
            }
            // Fewer names than asked for: the walk is at its end.
            if names.len() < need {
                return Ok((items, None));
            }
            // Otherwise the next names fill the page, unless it is full.
            if items.len() == want {
                let last = names.last().expect("a full page has a last name");
                let more = self.has_more().await?;
                return Ok((items, more.then(|| last.clone())));
            }
        }
    }

    /// Whether the index holds `name` now (read again).
    pub async fn holds(&self, name: &str) -> Result<bool, Error> {
        let leaf = leaf_covering(self.table, self.scope, name.as_bytes()).await?;
        Ok(leaf.names.iter().any(|n| n == name))
    }
}

/// What a listing makes of one name of its walk.
pub(crate) enum Listed<T> {
    /// An item of the page.
    Item(T),
    /// A record the page leaves out (an expired key's).
    Skipped,
    /// No record under the name.
    Missing,
}
