//! Whether an index is one whole tree (`ostore check`): every page reached
//! from the root exactly once, each opening and holding the range its
//! parent gives it, every page found reached, and the names in order.
//!
//! The tree is read as it is walked, an inner page's children in one read,
//! so that checking it holds a path of pages (and their siblings) at a
//! time, never the whole tree: a partition of ten million keys is checked
//! in a few megabytes.

use std::collections::HashSet;

use super::{MAX_DEPTH, ROOT};
use crate::objectstore::record::IndexPage;

/// A page as the check read it: `None` if there is none, `Some(None)` if
/// it does not open.
pub(crate) type ReadPage = Option<Option<IndexPage>>;

/// A page reached, waiting to be checked, with the range its parent gives
/// it.
struct Reached {
    id: u64,
    page: ReadPage,
    low: Option<String>,
    high: Option<String>,
    depth: usize,
}

/// Walks the tree whose `found` pages the caller has seen, reading pages
/// with `read` (the pages of the ids it is given, in their order), and
/// hands every name to `each`, in tree order. `Ok(Err(_))` says how the
/// tree is broken; `each` may have been given names before that was known.
/// `Err` is `read`'s own failure.
pub(crate) async fn check_tree<E>(
    found: usize,
    mut read: impl AsyncFnMut(&[u64]) -> Result<Vec<ReadPage>, E>,
    mut each: impl FnMut(&str),
) -> Result<Result<(), String>, E> {
    let root = read(&[ROOT]).await?.into_iter().next().flatten();
    let mut stack = vec![Reached {
        id: ROOT,
        page: root,
        low: None,
        high: None,
        depth: 0,
    }];
    let mut seen = HashSet::new();
    let mut last: Option<String> = None;
    let mut in_order = true;
    while let Some(reached) = stack.pop() {
        let id = reached.id;
        if reached.depth > MAX_DEPTH || !seen.insert(id) {
            return Ok(Err("its pages form a cycle".into()));
        }
        match reached.page {
            None => return Ok(Err(format!("page {id:016x} is missing"))),
            Some(None) => return Ok(Err(format!("page {id:016x} does not open"))),
            Some(Some(IndexPage::Leaf { low, high, names })) => {
                if low != reached.low || high != reached.high {
                    return Ok(Err(format!(
                        "leaf {id:016x} holds another range than its parent gives it"
                    )));
                }
                for (i, name) in names.iter().enumerate() {
                    let before = match i {
                        0 => last.as_deref(),
                        _ => Some(names[i - 1].as_str()),
                    };
                    in_order &= before.is_none_or(|b| b.as_bytes() < name.as_bytes());
                    each(name);
                }
                if let Some(name) = names.into_iter().next_back() {
                    last = Some(name);
                }
            }
            Some(Some(IndexPage::Inner {
                separators,
                children,
            })) => {
                let bounds: Vec<Option<String>> = std::iter::once(reached.low)
                    .chain(separators.into_iter().map(Some))
                    .chain(std::iter::once(reached.high))
                    .collect();
                let pages = read(&children).await?;
                // Checked left to right: pushed right to left.
                for (i, (child, page)) in children.iter().zip(pages).enumerate().rev() {
                    stack.push(Reached {
                        id: *child,
                        page,
                        low: bounds[i].clone(),
                        high: bounds[i + 1].clone(),
                        depth: reached.depth + 1,
                    });
                }
            }
        }
    }
    if !in_order {
        return Ok(Err("its names are out of order".into()));
    }
    let orphans = found.saturating_sub(seen.len());
    if orphans > 0 {
        return Ok(Err(format!("{orphans} of its pages are in no tree")));
    }
    Ok(Ok(()))
}
