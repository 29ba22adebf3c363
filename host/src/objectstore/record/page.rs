//! A page of an index of names (see `index`).

use super::wire::{self, Reader, Writer, var_len};
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

/// The most bytes a front-coded name takes from the name before it. Each
/// name then brings at least its length less this in bytes of its own, so
/// a page decodes to at most 128 times its encoded bytes (a name costs 2
/// bytes or more), whatever a damaged or hostile page says (unbounded, a
/// 62 KB page could decode to 210 MB: each name copies the one before).
const MAX_SHARED: usize = 255;

/// How many leading bytes `name` takes from `previous` in a page: those
/// they share, at most [`MAX_SHARED`].
fn shared_len(previous: &str, name: &str) -> usize {
    (previous.bytes())
        .zip(name.bytes())
        .take(MAX_SHARED)
        .take_while(|(x, y)| x == y)
        .count()
}

/// What `name` takes in a compact page after `previous` (`None`: first of
/// its page): the length of the prefix they share, then the rest of it
/// with its length first. Names in order share long prefixes, which this
/// writes once (front coding).
pub(crate) fn name_len_after(previous: Option<&str>, name: &str) -> usize {
    let shared = previous.map_or(0, |p| shared_len(p, name));
    let rest = name.len() - shared;
    var_len(shared as u64) + var_len(rest as u64) + rest
}

/// What a page's bound takes: a byte saying whether it is there, then the
/// name with its length first.
pub(crate) fn bound_len(name: Option<&str>) -> usize {
    1 + name.map_or(0, |n| var_len(n.len() as u64) + n.len())
}

/// The compact encoding's bytes besides the names: the format byte and the
/// page's kind.
pub(crate) const PAGE_HEAD: usize = 2;

/// What each of `names`, in order, takes in a compact page: the first
/// whole, each other after the one before it.
pub(crate) fn name_lens(names: &[String]) -> impl Iterator<Item = usize> + '_ {
    (names.iter().enumerate())
        .map(|(i, name)| name_len_after(i.checked_sub(1).map(|p| names[p].as_str()), name))
}

/// What `names`, in order, take in a compact page, their count included.
fn names_len(names: &[String]) -> usize {
    var_len(names.len() as u64) + name_lens(names).sum::<usize>()
}

fn write_names(w: &mut Writer, names: &[String]) {
    w.var(names.len() as u64);
    let mut previous: Option<&str> = None;
    for name in names {
        let shared = previous.map_or(0, |p| shared_len(p, name));
        w.var(shared as u64).var_bytes(&name.as_bytes()[shared..]);
        previous = Some(name);
    }
}

/// Names as [`write_names`] writes them.
fn read_names(r: &mut Reader<'_>) -> Result<Vec<String>, Malformed> {
    let count = r.var()?;
    let mut names: Vec<String> = Vec::new();
    for _ in 0..count {
        let shared = usize::try_from(r.var()?).map_err(|_| Malformed)?;
        let rest = r.var_bytes()?;
        let previous = names.last().map_or(&[][..], |p| p.as_bytes());
        if shared > previous.len() || shared > MAX_SHARED {
            return Err(Malformed);
        }
        let mut name = previous[..shared].to_vec();
        name.extend_from_slice(rest);
        names.push(String::from_utf8(name).map_err(|_| Malformed)?);
    }
    Ok(names)
}

impl IndexPage {
    /// The page as format 1 wrote it (each name with a u64 length first),
    /// for tests of data at rest from before the compact format.
    #[cfg(test)]
    pub(crate) fn encode_format_1(&self) -> Vec<u8> {
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

    /// The length of [`encode`](Record::encode)'s bytes, without making
    /// them: an edit asks it after each change, to know when to split.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            IndexPage::Leaf { low, high, names } => {
                PAGE_HEAD
                    + bound_len(low.as_deref())
                    + bound_len(high.as_deref())
                    + names_len(names)
            }
            IndexPage::Inner {
                separators,
                children,
            } => PAGE_HEAD + names_len(separators) + 8 * children.len(),
        }
    }
}

/// Written in the compact format (`wire`): after the kind, a leaf's bounds
/// and names, or an inner page's separators and then its children's ids
/// (8 bytes each: they are random). Names are front-coded (see
/// [`name_len_after`]). Pages of format 1, written before, are still read.
impl Record for IndexPage {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::compact();
        match self {
            IndexPage::Leaf { low, high, names } => {
                w.u8(LEAF)
                    .var_name(low.as_deref())
                    .var_name(high.as_deref());
                write_names(&mut w, names);
            }
            IndexPage::Inner {
                separators,
                children,
            } => {
                w.u8(INNER);
                write_names(&mut w, separators);
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
        let page = match bytes.first() {
            Some(&wire::COMPACT) => decode_compact(bytes)?,
            _ => decode_format_1(bytes)?,
        };
        let ascending =
            |names: &[String]| names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes());
        match &page {
            IndexPage::Leaf { low, high, names } => {
                let in_range = |n: &String| {
                    low.as_ref().is_none_or(|l| l.as_bytes() <= n.as_bytes())
                        && high.as_ref().is_none_or(|h| n.as_bytes() < h.as_bytes())
                };
                if !ascending(names) || !names.iter().all(in_range) {
                    return Err(Malformed);
                }
            }
            IndexPage::Inner { separators, .. } => {
                if !ascending(separators) {
                    return Err(Malformed);
                }
            }
        }
        Ok(page)
    }
}

fn decode_compact(bytes: &[u8]) -> Result<IndexPage, Malformed> {
    decode_with(Reader::compact(bytes)?, Reader::var_name, read_names)
}

/// A page as written before the compact format: every name with a u64
/// length first.
fn decode_format_1(bytes: &[u8]) -> Result<IndexPage, Malformed> {
    decode_with(Reader::new(bytes)?, Reader::name, |r| {
        let count = r.u64()?;
        let mut names = Vec::new();
        for _ in 0..count {
            names.push(r.string()?);
        }
        Ok(names)
    })
}

/// A page after its format byte, whose bounds and runs of names the
/// format's own readers read. Counts are not trusted for an allocation:
/// each item read checks that its bytes are there.
fn decode_with<'a>(
    mut r: Reader<'a>,
    bound: impl Fn(&mut Reader<'a>) -> Result<Option<String>, Malformed>,
    names: impl Fn(&mut Reader<'a>) -> Result<Vec<String>, Malformed>,
) -> Result<IndexPage, Malformed> {
    let page = match r.u8()? {
        LEAF => {
            let low = bound(&mut r)?;
            let high = bound(&mut r)?;
            let names = names(&mut r)?;
            IndexPage::Leaf { low, high, names }
        }
        INNER => {
            let separators = names(&mut r)?;
            let mut children = Vec::new();
            for _ in 0..=separators.len() {
                children.push(r.u64()?);
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
