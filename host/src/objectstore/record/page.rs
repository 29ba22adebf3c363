//! A page of an index of names (see `index`).

use super::wire::{Reader, Writer};
use super::{Malformed, Record};

/// A page of a partition's ordered index of key names (see `index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexPage {
    /// Names in ascending byte order, all within `[low, high)` (`None`: no
    /// bound). The bounds are the leaf's whole range in the tree, so that a
    /// reader who reached it through a parent read a moment earlier can tell
    /// whether the leaf still covers what it looks for.
    Leaf {
        low: Option<String>,
        high: Option<String>,
        names: Vec<String>,
    },
    /// Child `i` holds the names from `separators[i - 1]` (inclusive) to
    /// `separators[i]` (exclusive); there is one child more than separators.
    Inner {
        separators: Vec<String>,
        children: Vec<u64>,
    },
}

const LEAF: u8 = 1;
const INNER: u8 = 2;

impl IndexPage {
    /// The length of [`encode`](Record::encode)'s bytes, without making
    /// them: an edit asks it after each change, to know when to split.
    pub(crate) fn encoded_len(&self) -> usize {
        // The format byte and the kind, then each field as `Writer` puts
        // it: a u64 is 8 bytes, bytes have their u64 length first, and an
        // optional name has a byte saying whether it is there.
        const HEAD: usize = 2;
        let bytes = |s: &String| 8 + s.len();
        let name = |n: &Option<String>| 1 + n.as_ref().map_or(0, bytes);
        match self {
            IndexPage::Leaf { low, high, names } => {
                HEAD + name(low) + name(high) + 8 + names.iter().map(bytes).sum::<usize>()
            }
            IndexPage::Inner {
                separators,
                children,
            } => HEAD + 8 + separators.iter().map(bytes).sum::<usize>() + 8 * children.len(),
        }
    }
}

impl Record for IndexPage {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            IndexPage::Leaf { low, high, names } => {
                w.u8(LEAF).name(low.as_deref()).name(high.as_deref());
                w.u64(names.len() as u64);
                for name in names {
                    w.bytes(name.as_bytes());
                }
            }
            IndexPage::Inner {
                separators,
                children,
            } => {
                w.u8(INNER).u64(separators.len() as u64);
                for separator in separators {
                    w.bytes(separator.as_bytes());
                }
                for child in children {
                    w.u64(*child);
                }
            }
        }
        w.0
    }

    /// Checks the order the tree relies on: a page whose names are out of
    /// order would send searches astray, so it is malformed like any other.
    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let ascending =
            |names: &[String]| names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes());
        // Counts are not trusted for an allocation: each item read checks
        // that its bytes are there.
        let page = match r.u8()? {
            LEAF => {
                let low = r.name()?;
                let high = r.name()?;
                let count = r.u64()?;
                let mut names = Vec::new();
                for _ in 0..count {
                    names.push(r.string()?);
                }
                let in_range = |n: &String| {
                    low.as_ref().is_none_or(|l| l.as_bytes() <= n.as_bytes())
                        && high.as_ref().is_none_or(|h| n.as_bytes() < h.as_bytes())
                };
                if !ascending(&names) || !names.iter().all(in_range) {
                    return Err(Malformed);
                }
                IndexPage::Leaf { low, high, names }
            }
            INNER => {
                let count = r.u64()?;
                let mut separators = Vec::new();
                for _ in 0..count {
                    separators.push(r.string()?);
                }
                let mut children = Vec::new();
                for _ in 0..=count {
                    children.push(r.u64()?);
                }
                if !ascending(&separators) {
                    return Err(Malformed);
                }
                IndexPage::Inner {
                    separators,
                    children,
                }
            }
            _ => return Err(Malformed),
        };
        r.finish()?;
        Ok(page)
    }
}
