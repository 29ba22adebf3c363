//! What `ostore check` and `ostore repair` report, and how the walk's
//! findings, kept by ids while it reads, are named once it knows the names.

use std::fmt;

use crate::encryption::hex;

use super::walk::{Place, Walk};

/// What a check or a repair found.
#[derive(Debug, Default)]
pub struct Report {
    /// Records read.
    pub records: u64,
    /// Records set aside by earlier repairs (not damage: already handled).
    pub quarantined: u64,
    /// Damage found, each with where it is and what repair does about it.
    pub damage: Vec<Damage>,
    /// What the records take at rest, by kind, the largest first.
    pub sizes: Vec<KindSize>,
}

/// How many records of one kind there are and what they take at rest:
/// their keys and sealed values, as stored (not the engine's pages around
/// them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSize {
    /// What the records are, in words (`"entries"`, `"expiry index"`...).
    pub kind: &'static str,
    pub records: u64,
    pub bytes: u64,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// One damaged record or index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub kind: DamageKind,
    /// Where: the application, store and partition by name where they
    /// can be opened, and the backend key in hex.
    pub place: String,
    pub remedy: Remedy,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.kind, self.place, self.remedy)
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DamageKind {
    /// A record that does not open under its key (altered at rest).
    Unreadable(RecordKind),
    /// A key that is no key of the layout.
    MalformedKey,
    /// A record of an application whose own record is missing or damaged.
    UnknownApplication,
    /// An entry that expires has no expiry index entry: the sweep would
    /// never reclaim it.
    MissingExpiry,
    /// An expiry index entry whose entry is gone or expires in another
    /// tick (see `keys::EXPIRY_TICK_MS`).
    StaleExpiry,
    /// A partition's kept counts differ from a recount of its entries.
    UsageMismatch {
        counted: (i64, i64),
        recounted: (i64, i64),
    },
    /// A partition's index of names is not a whole tree: `what` says how.
    IndexBroken(String),
    /// A partition's index of names differs from its entries: names of
    /// entries it lacks, and names it holds without an entry.
    IndexMismatch { missing: usize, extra: usize },
    /// The backend answered a scan out of key order (damaged pages), or
    /// its engine's own check failed: the walk may not have seen every
    /// record.
    Engine(String),
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageKind::Unreadable(kind) => write!(f, "unreadable {kind} record"),
            DamageKind::MalformedKey => f.write_str("malformed key"),
            DamageKind::UnknownApplication => f.write_str("record of an unknown application"),
            DamageKind::MissingExpiry => f.write_str("missing expiry index entry"),
            DamageKind::StaleExpiry => f.write_str("stale expiry index entry"),
            DamageKind::UsageMismatch { counted, recounted } => write!(
                f,
                "usage counters say {} keys, {} bytes; a recount finds {} keys, {} bytes",
                counted.0, counted.1, recounted.0, recounted.1
            ),
            DamageKind::IndexBroken(what) => write!(f, "broken index of names: {what}"),
            DamageKind::IndexMismatch { missing, extra } => write!(
                f,
                "index of names lacks {missing} names of entries and holds {extra} names without an entry"
            ),
            DamageKind::Engine(what) => write!(f, "damaged storage: {what}"),
        }
    }
}

/// The kind of a record, as reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    MasterCheck,
    Credential,
    Application,
    Store,
    StoreTombstone,
    Partition,
    Stats,
    Usage,
    RateBucket,
    Entry,
    IndexPage,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::MasterCheck => "master check",
            RecordKind::Credential => "credential",
            RecordKind::Application => "application",
            RecordKind::Store => "store",
            RecordKind::StoreTombstone => "store tombstone",
            RecordKind::Partition => "partition",
            RecordKind::Stats => "stats",
            RecordKind::Usage => "usage",
            RecordKind::RateBucket => "rate bucket",
            RecordKind::Entry => "entry",
            RecordKind::IndexPage => "index page",
        })
    }
}

/// What `ostore repair` does about a damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Derived again from the records that open.
    Rebuild,
    /// Moved, as it is, under the quarantine prefix.
    SetAside,
    /// Nothing a repair does: the engine's own damage, or a derived record
    /// after a walk that stopped at such damage.
    None,
}

impl fmt::Display for Remedy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Remedy::Rebuild => "repair rebuilds it",
            Remedy::SetAside => "repair sets it aside",
            Remedy::None => "repair cannot fix this",
        })
    }
}

impl Walk<'_> {
    /// Names a place: application, store and partition by name where their
    /// records open, and the backend key in hex.
    fn describe(&self, place: &Place) -> String {
        let mut parts = Vec::new();
        if let Some(app) = place.app {
            match self.apps.get(&app) {
                Some(keys) => parts.push(format!("application {:?}", keys.name)),
                None => parts.push(format!("unknown application {}", hex(&app))),
            }
        }
        if let (Some(app), Some(store)) = (place.app, place.store) {
            match self.store_names.get(&(app, store)) {
                Some(name) => parts.push(format!("store {name:?}")),
                None => parts.push(format!("store {}", hex(&store))),
            }
        }
        if let Some(id) = place.partition {
            match self.partition_names.get(&id) {
                Some(name) => parts.push(format!("partition {name:?}")),
                None => parts.push(format!("partition {}", hex(&id.partition))),
            }
        }
        if !place.key.is_empty() {
            parts.push(format!("backend key {}", hex(&place.key)));
        }
        if parts.is_empty() {
            parts.push("the backend".into());
        }
        parts.join(", ")
    }

    pub(super) fn report(&self) -> Report {
        Report {
            records: self.records,
            quarantined: self.quarantined,
            damage: self
                .found
                .iter()
                .map(|f| Damage {
                    kind: f.kind.clone(),
                    place: self.describe(&f.place),
                    remedy: f.remedy,
                })
                .collect(),
            sizes: {
                let mut sizes: Vec<KindSize> = self
                    .sizes
                    .iter()
                    .map(|(&kind, &(records, bytes))| KindSize {
                        kind,
                        records,
                        bytes,
                    })
                    .collect();
                sizes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.kind.cmp(b.kind)));
                sizes
            },
        }
    }
}
