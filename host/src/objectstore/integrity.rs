//! `ostore check` and `ostore repair`: a walk over every record of a backend
//! that finds what is damaged, and a repair that rebuilds what can be
//! derived and sets aside what cannot be opened.
//!
//! The walk works through the [`Backend`] trait only, so it runs on every
//! backend alike. It reads each record once, in key order, and checks:
//!
//! - that the key is one of the layout's (see `keys`), in key order;
//! - that the record opens under its key: the master check and the
//!   credentials and applications under the master key, everything else
//!   under its application's data keys;
//! - the expiry index both ways: every entry with an expiry has its index
//!   entry, and every index entry has an entry that expires then;
//! - each store's usage counters against a recount of its entries;
//! - each partition's index of names: a whole tree (every page there and
//!   opening, ranges and order right), holding exactly the names of the
//!   entries that open. A partition without an index is not damaged: its
//!   first use builds one (data written before the index existed).
//!
//! What can be derived (the expiry index, the usage counters, the master
//! check, a request-rate bucket, an index of names) the repair writes
//! again. What cannot (an
//! entry, a store or partition's settings, an application's keys, a
//! credential, a day's request counts) it *sets aside*: moves it, still
//! sealed, under the quarantine prefix (`keys::quarantined`), where no
//! listing, count or sweep reads it and an operator can still find it.
//! Nothing else is written.
//!
//! Both are offline tools: a running host keeps usage changes in memory
//! for up to a second, so a check beside running hosts may report counters
//! a flush behind, and a repair beside them may undo such a flush.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::backend::{Backend, Batch, Expect, Shards};
use crate::encryption::{MasterKey, Sealer, Tag, hex};

use super::Error;
use super::index;
use super::keys::{
    EntryId, PartitionId, Prefix, RecordKey, probable_shards, quarantine, quarantined,
};
use super::record::{
    AppRecord, CredentialRecord, EntryRecord, IndexPage, MasterCheck, PartitionRecord, RateRecord,
    Record, StatsRecord, StoreRecord, StoreTombstone, UsageRecord,
};
use super::sealed::SealedTable;

/// How many records the walk reads per backend call.
const WALK_CHUNK: usize = 1024;

/// What a check or a repair found.
#[derive(Debug, Default)]
pub struct Report {
    /// Records read.
    pub records: u64,
    /// Records set aside by earlier repairs (not damage: already handled).
    pub quarantined: u64,
    /// Damage found, each with where it is and what repair does about it.
    pub damage: Vec<Damage>,
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
    /// An expiry index entry whose entry is gone or expires at another time.
    StaleExpiry,
    /// A store's usage counters differ from a recount of its entries.
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
    /// Nothing can be done by a repair (the engine's own damage).
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

/// Walks every record of `backend` and reports what is damaged. Changes
/// nothing. Fails with [`Error::WrongMasterKey`] when no application record
/// opens under `master` (the wrong key, rather than damage).
pub async fn check(backend: &dyn Backend, master: &MasterKey) -> Result<Report, Error> {
    let sealer = master.sealer();
    let walk = Walk::run(backend, &sealer).await?;
    Ok(walk.report())
}

/// Repairs what [`check`] finds: rebuilds the expiry index, the usage
/// counters, the master check and request-rate buckets, and sets aside
/// every record that does not open. Returns what it found (and so did).
pub async fn repair(backend: &dyn Backend, master: &MasterKey) -> Result<Report, Error> {
    let sealer = master.sealer();
    let walk = Walk::run(backend, &sealer).await?;
    walk.apply(backend).await?;
    Ok(walk.report())
}

/// An application's keys, as its record holds them.
struct AppKeys {
    name: String,
    sealer: Sealer,
}

/// Where a damage is, by ids; named once the walk knows the names.
struct Place {
    app: Option<Tag>,
    store: Option<Tag>,
    partition: Option<PartitionId>,
    key: Vec<u8>,
}

impl Place {
    fn of(key: &[u8]) -> Self {
        let (app, store, partition) = match RecordKey::parse(key) {
            Some(RecordKey::App(app)) | Some(RecordKey::RateBucket(app)) => (Some(app), None, None),
            Some(RecordKey::Store { app, store })
            | Some(RecordKey::Stats { app, store, .. })
            | Some(RecordKey::Usage { app, store }) => (Some(app), Some(store), None),
            Some(RecordKey::Partition(id))
            | Some(RecordKey::IndexPage { partition: id, .. })
            | Some(RecordKey::Entry(EntryId { partition: id, .. }))
            | Some(RecordKey::Expiry {
                entry: EntryId { partition: id, .. },
                ..
            }) => (Some(id.app), Some(id.store), Some(id)),
            _ => (None, None, None),
        };
        Place {
            app,
            store,
            partition,
            key: key.to_vec(),
        }
    }
}

/// A found damage, before its place is named.
struct Found {
    kind: DamageKind,
    place: Place,
    remedy: Remedy,
}

/// Keys and bytes of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    keys: i64,
    bytes: i64,
}

/// Everything one walk learned.
struct Walk<'a> {
    master: &'a Sealer,
    records: u64,
    quarantined: u64,
    apps: HashMap<Tag, AppKeys>,
    store_names: HashMap<(Tag, Tag), String>,
    partition_names: HashMap<PartitionId, String>,
    found: Vec<Found>,
    /// Records to set aside: key and sealed bytes.
    set_aside: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the master check needs writing again.
    master_check_missing: bool,
    /// Rate buckets to delete (a fresh bucket is full): key and bytes.
    rate_buckets: Vec<(Vec<u8>, Vec<u8>)>,
    /// The expiry index as the entries that open say it should be.
    expected_expiries: HashSet<(u64, EntryId)>,
    /// The expiry index as found.
    expiries: HashSet<(u64, EntryId)>,
    /// Per store: every entry there is, and those that stay after repair.
    counted_all: BTreeMap<(Tag, Tag), Counts>,
    counted_kept: BTreeMap<(Tag, Tag), Counts>,
    /// The usage counters found (`None`: present but unreadable).
    usage: BTreeMap<(Tag, Tag), Option<UsageRecord>>,
    /// Each partition's index pages as found (`None`: does not open).
    index_pages: BTreeMap<PartitionId, HashMap<u64, Option<IndexPage>>>,
    /// The names of each partition's entries that open.
    entry_names: HashMap<PartitionId, HashSet<String>>,
    /// Partitions whose index repair writes again.
    rebuild_index: Vec<PartitionId>,
}

impl<'a> Walk<'a> {
    async fn run(backend: &dyn Backend, master: &'a Sealer) -> Result<Walk<'a>, Error> {
        let mut walk = Walk {
            master,
            records: 0,
            quarantined: 0,
            apps: HashMap::new(),
            store_names: HashMap::new(),
            partition_names: HashMap::new(),
            found: Vec::new(),
            set_aside: Vec::new(),
            master_check_missing: false,
            rate_buckets: Vec::new(),
            expected_expiries: HashSet::new(),
            expiries: HashSet::new(),
            counted_all: BTreeMap::new(),
            counted_kept: BTreeMap::new(),
            usage: BTreeMap::new(),
            index_pages: BTreeMap::new(),
            entry_names: HashMap::new(),
            rebuild_index: Vec::new(),
        };
        walk.read_applications(backend).await?;
        walk.read_all(backend).await?;
        walk.compare_expiries();
        walk.compare_usage();
        walk.compare_indexes();
        Ok(walk)
    }

    fn found(&mut self, kind: DamageKind, key: &[u8], remedy: Remedy) {
        self.found.push(Found {
            kind,
            place: Place::of(key),
            remedy,
        });
    }

    /// A record that cannot be opened or placed: reported and set aside.
    fn unreadable(&mut self, kind: DamageKind, key: &[u8], sealed: &[u8]) {
        self.found(kind, key, Remedy::SetAside);
        self.set_aside.push((key.to_vec(), sealed.to_vec()));
    }

    /// Reads the applications first: every other record opens under one's
    /// keys. Decides whether `master` is the data's key at all.
    async fn read_applications(&mut self, backend: &dyn Backend) -> Result<(), Error> {
        let table = SealedTable::new(backend, self.master);
        let check_key = RecordKey::MasterCheck.encode();
        let check = backend
            .get(&RecordKey::MasterCheck.shard().encode(), &check_key)
            .await?;
        let check_opens = match &check {
            Some(sealed) => open::<MasterCheck>(self.master, &check_key, sealed).is_some(),
            None => false,
        };
        let mut unopened = Vec::new();
        let mut scan = table.scan(Prefix::Apps);
        loop {
            let chunk = scan.next_chunk_of(WALK_CHUNK).await?;
            if chunk.is_empty() {
                break;
            }
            for (key, sealed) in chunk {
                let opened = match RecordKey::parse(&key) {
                    Some(RecordKey::App(tag)) => open::<AppRecord>(self.master, &key, &sealed)
                        .filter(|r| tag == self.master.tag(b"app", b"", r.name.as_bytes()))
                        .map(|r| (tag, r)),
                    _ => None,
                };
                match opened {
                    Some((tag, record)) => {
                        let keys = AppKeys {
                            sealer: Sealer::new(&record.seal_key, &record.tag_key),
                            name: record.name,
                        };
                        self.apps.insert(tag, keys);
                    }
                    None => unopened.push((key, sealed)),
                }
            }
        }
        // Nothing opens under this key: it is the wrong key, not damage
        // (setting every record aside would be the worst "repair").
        if !check_opens && self.apps.is_empty() && (check.is_some() || !unopened.is_empty()) {
            return Err(Error::WrongMasterKey);
        }
        match check {
            Some(_) if check_opens => {}
            Some(_) => {
                self.found(
                    DamageKind::Unreadable(RecordKind::MasterCheck),
                    &check_key,
                    Remedy::Rebuild,
                );
                self.master_check_missing = true;
            }
            // Data without a master check (a fresh store has neither).
            None if !self.apps.is_empty() => {
                self.found(
                    DamageKind::Unreadable(RecordKind::MasterCheck),
                    &check_key,
                    Remedy::Rebuild,
                );
                self.master_check_missing = true;
            }
            None => {}
        }
        for (key, sealed) in unopened {
            self.unreadable(
                DamageKind::Unreadable(RecordKind::Application),
                &key,
                &sealed,
            );
        }
        Ok(())
    }

    /// Reads every record, in key order, checking that order itself.
    async fn read_all(&mut self, backend: &dyn Backend) -> Result<(), Error> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = match backend
                .scan(Shards::ALL, b"", after.as_deref(), WALK_CHUNK)
                .await
            {
                Ok(chunk) => chunk,
                Err(crate::backend::BackendError::Damaged(what)) => {
                    // The walk cannot go on past a damaged page: what it
                    // has not seen is reported as unknown, never as clean.
                    self.found(DamageKind::Engine(what), b"", Remedy::None);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let ended = chunk.len() < WALK_CHUNK;
            for (key, sealed) in chunk {
                if after.as_ref().is_some_and(|a| key <= *a) {
                    self.found(
                        DamageKind::Engine(format!("key {} is out of order", hex(&key))),
                        &key,
                        Remedy::None,
                    );
                    continue;
                }
                self.records += 1;
                self.read_one(&key, &sealed);
                after = Some(key);
            }
            if ended {
                return Ok(());
            }
        }
    }

    fn read_one(&mut self, key: &[u8], sealed: &[u8]) {
        let Some(record_key) = RecordKey::parse(key) else {
            if quarantined(key).is_some() {
                self.quarantined += 1;
            } else {
                self.unreadable(DamageKind::MalformedKey, key, sealed);
            }
            return;
        };
        match record_key {
            // Read first, with the applications.
            RecordKey::MasterCheck | RecordKey::App(_) => {}
            RecordKey::Credential(_) => {
                if open::<CredentialRecord>(self.master, key, sealed).is_none() {
                    self.unreadable(DamageKind::Unreadable(RecordKind::Credential), key, sealed);
                }
            }
            RecordKey::Store { app, store } => {
                if let Some(r) = self.open_of::<StoreRecord>(app, key, sealed, RecordKind::Store) {
                    self.store_names.insert((app, store), r.name);
                }
            }
            // A store deletion under way, or cut off: the sweep finishes it.
            RecordKey::StoreTombstone { app, .. } => {
                self.open_of::<StoreTombstone>(app, key, sealed, RecordKind::StoreTombstone);
            }
            RecordKey::Partition(id) => {
                if let Some(r) =
                    self.open_of::<PartitionRecord>(id.app, key, sealed, RecordKind::Partition)
                {
                    self.partition_names.insert(id, r.name);
                }
            }
            RecordKey::Stats { app, .. } => {
                self.open_of::<StatsRecord>(app, key, sealed, RecordKind::Stats);
            }
            RecordKey::Usage { app, store } => {
                // Counters are derived: an unreadable one is rebuilt, not
                // set aside.
                let Some(record) = self.open_derived(app, key, sealed, RecordKind::Usage) else {
                    return;
                };
                self.usage.insert((app, store), record);
            }
            RecordKey::RateBucket(app) => {
                let opens = self
                    .apps
                    .get(&app)
                    .map(|keys| open::<RateRecord>(&keys.sealer, key, sealed).is_some());
                match opens {
                    None => self.unreadable(DamageKind::UnknownApplication, key, sealed),
                    Some(true) => {}
                    Some(false) => {
                        self.found(
                            DamageKind::Unreadable(RecordKind::RateBucket),
                            key,
                            Remedy::Rebuild,
                        );
                        self.rate_buckets.push((key.to_vec(), sealed.to_vec()));
                    }
                }
            }
            RecordKey::Entry(id) => {
                let store = (id.partition.app, id.partition.store);
                let footprint = Counts {
                    keys: 1,
                    bytes: (key.len() + sealed.len()) as i64,
                };
                add(self.counted_all.entry(store).or_default(), footprint);
                if let Some(r) =
                    self.open_of::<EntryRecord>(id.partition.app, key, sealed, RecordKind::Entry)
                {
                    add(self.counted_kept.entry(store).or_default(), footprint);
                    if let Some(at) = r.expires {
                        self.expected_expiries.insert((at, id));
                    }
                    self.entry_names
                        .entry(id.partition)
                        .or_default()
                        .insert(r.key);
                }
            }
            RecordKey::Expiry { at, entry } => {
                self.expiries.insert((at, entry));
            }
            RecordKey::IndexPage { partition, page } => {
                // Pages are derived: an unreadable one is rebuilt with its
                // tree, not set aside.
                let Some(record) =
                    self.open_derived(partition.app, key, sealed, RecordKind::IndexPage)
                else {
                    return;
                };
                self.index_pages
                    .entry(partition)
                    .or_default()
                    .insert(page, record);
            }
        }
    }

    /// Opens a record that can be derived from others (a counter, an index
    /// page) of application `app`: `Some(None)` if it does not open, which
    /// is reported to be rebuilt; `None` if the application is unknown,
    /// which is reported and set aside.
    fn open_derived<R: Record>(
        &mut self,
        app: Tag,
        key: &[u8],
        sealed: &[u8],
        kind: RecordKind,
    ) -> Option<Option<R>> {
        let Some(keys) = self.apps.get(&app) else {
            self.unreadable(DamageKind::UnknownApplication, key, sealed);
            return None;
        };
        let record = open::<R>(&keys.sealer, key, sealed);
        if record.is_none() {
            self.found(DamageKind::Unreadable(kind), key, Remedy::Rebuild);
        }
        Some(record)
    }

    /// Opens a record of application `app`, or reports it and sets it
    /// aside.
    fn open_of<R: Record>(
        &mut self,
        app: Tag,
        key: &[u8],
        sealed: &[u8],
        kind: RecordKind,
    ) -> Option<R> {
        let Some(keys) = self.apps.get(&app) else {
            self.unreadable(DamageKind::UnknownApplication, key, sealed);
            return None;
        };
        let record = open::<R>(&keys.sealer, key, sealed);
        if record.is_none() {
            self.unreadable(DamageKind::Unreadable(kind), key, sealed);
        }
        record
    }

    fn compare_expiries(&mut self) {
        let mut missing: Vec<_> = self
            .expected_expiries
            .difference(&self.expiries)
            .copied()
            .collect();
        let mut stale: Vec<_> = self
            .expiries
            .difference(&self.expected_expiries)
            .copied()
            .collect();
        missing.sort();
        stale.sort();
        for (at, entry) in missing {
            let key = RecordKey::Expiry { at, entry }.encode();
            self.found(DamageKind::MissingExpiry, &key, Remedy::Rebuild);
        }
        for (at, entry) in stale {
            let key = RecordKey::Expiry { at, entry }.encode();
            self.found(DamageKind::StaleExpiry, &key, Remedy::Rebuild);
        }
    }

    /// Checks each partition's index of names: a whole tree, holding the
    /// names of the entries that open and no other.
    fn compare_indexes(&mut self) {
        let no_names = HashSet::new();
        let mut broken = Vec::new();
        for (partition, pages) in &self.index_pages {
            let entries = self.entry_names.get(partition).unwrap_or(&no_names);
            let kind = match index::names_of(pages) {
                Err(what) => DamageKind::IndexBroken(what),
                Ok(names) => {
                    let indexed: HashSet<&String> = names.iter().collect();
                    let missing = entries.iter().filter(|n| !indexed.contains(n)).count();
                    let extra = names.iter().filter(|n| !entries.contains(*n)).count();
                    if missing == 0 && extra == 0 {
                        continue;
                    }
                    DamageKind::IndexMismatch { missing, extra }
                }
            };
            broken.push((*partition, kind));
        }
        for (partition, kind) in broken {
            let key = RecordKey::IndexPage {
                partition,
                page: index::ROOT,
            }
            .encode();
            self.found(kind, &key, Remedy::Rebuild);
            self.rebuild_index.push(partition);
        }
        // An unreadable page (reported as it was read) breaks its tree too.
        for (partition, pages) in &self.index_pages {
            if pages.values().any(Option::is_none) && !self.rebuild_index.contains(partition) {
                self.rebuild_index.push(*partition);
            }
        }
    }

    /// Compares each store's counters with the recount. An application
    /// without counters is not damaged: its first host counts its data.
    fn compare_usage(&mut self) {
        let counted_apps: HashSet<Tag> = self.usage.keys().map(|(app, _)| *app).collect();
        let stores: HashSet<(Tag, Tag)> = self
            .counted_all
            .keys()
            .chain(self.usage.keys())
            .copied()
            .filter(|(app, _)| counted_apps.contains(app))
            .collect();
        let mut stores: Vec<_> = stores.into_iter().collect();
        stores.sort();
        for (app, store) in stores {
            let recounted = self
                .counted_all
                .get(&(app, store))
                .copied()
                .unwrap_or_default();
            let counted = match self.usage.get(&(app, store)) {
                // Unreadable: already reported.
                Some(None) => continue,
                Some(Some(r)) => Counts {
                    keys: r.keys,
                    bytes: r.bytes,
                },
                None => Counts::default(),
            };
            if counted != recounted {
                let key = RecordKey::Usage { app, store }.encode();
                self.found(
                    DamageKind::UsageMismatch {
                        counted: (counted.keys, counted.bytes),
                        recounted: (recounted.keys, recounted.bytes),
                    },
                    &key,
                    Remedy::Rebuild,
                );
            }
        }
    }

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

    fn report(&self) -> Report {
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
        }
    }

    /// Carries out every remedy, each batch in its own shard.
    async fn apply(&self, backend: &dyn Backend) -> Result<(), Error> {
        for (key, sealed) in &self.set_aside {
            set_aside(backend, key, sealed).await?;
        }
        let master = SealedTable::new(backend, self.master);
        if self.master_check_missing {
            master.put(&RecordKey::MasterCheck, &MasterCheck).await?;
        }
        for (key, sealed) in &self.rate_buckets {
            delete_if_unchanged(backend, key, sealed).await?;
        }
        for &(at, entry) in self.expected_expiries.difference(&self.expiries) {
            let key = RecordKey::Expiry { at, entry };
            let mut batch = Batch::new(key.shard().encode());
            batch.put(key.encode(), Vec::new(), Expect::Any);
            backend.commit(batch).await?;
        }
        for &(at, entry) in self.expiries.difference(&self.expected_expiries) {
            let key = RecordKey::Expiry { at, entry };
            let mut batch = Batch::new(key.shard().encode());
            batch.delete(key.encode(), Expect::Any);
            backend.commit(batch).await?;
        }
        // After the set-asides: an index holds the entries that stay.
        for partition in &self.rebuild_index {
            if let Some(keys) = self.apps.get(&partition.app) {
                index::rebuild(SealedTable::new(backend, &keys.sealer), *partition).await?;
            }
        }
        // Every store of an application with counters gets its recount,
        // which leaves out what was set aside.
        let counted_apps: HashSet<Tag> = self.usage.keys().map(|(app, _)| *app).collect();
        let stores: HashSet<(Tag, Tag)> = self
            .counted_all
            .keys()
            .chain(self.usage.keys())
            .copied()
            .filter(|(app, _)| counted_apps.contains(app) && self.apps.contains_key(app))
            .collect();
        for (app, store) in stores {
            let kept = self
                .counted_kept
                .get(&(app, store))
                .copied()
                .unwrap_or_default();
            let record = UsageRecord {
                keys: kept.keys,
                bytes: kept.bytes,
            };
            if self.usage.get(&(app, store)) == Some(&Some(record)) {
                continue;
            }
            let table = SealedTable::new(backend, &self.apps[&app].sealer);
            table.put(&RecordKey::Usage { app, store }, &record).await?;
        }
        Ok(())
    }
}

/// The record `sealed` holds for `key`, if it opens and parses.
fn open<R: Record>(sealer: &Sealer, key: &[u8], sealed: &[u8]) -> Option<R> {
    R::decode(&sealer.open(key, sealed).ok()?).ok()
}

fn add(total: &mut Counts, more: Counts) {
    total.keys += more.keys;
    total.bytes += more.bytes;
}

/// Moves a record, as it is, under the quarantine prefix: first the copy,
/// then the original (only if unchanged), so that a repair cut short loses
/// nothing and can be run again.
async fn set_aside(backend: &dyn Backend, key: &[u8], sealed: &[u8]) -> Result<(), Error> {
    let (shard, aside) = quarantine(key);
    let mut batch = Batch::new(shard);
    batch.put(aside, sealed.to_vec(), Expect::Any);
    backend.commit(batch).await?;
    delete_if_unchanged(backend, key, sealed).await
}

/// Deletes `key` if it still holds `sealed`. A damaged key may be of no
/// shard, or of a shard its own bytes no longer name: each shard it may be
/// in is tried until it is gone.
async fn delete_if_unchanged(
    backend: &dyn Backend,
    key: &[u8],
    sealed: &[u8],
) -> Result<(), Error> {
    let shards = match RecordKey::parse(key) {
        Some(record) => vec![record.shard().encode()],
        None => probable_shards(key),
    };
    for shard in &shards {
        if backend.get(shard, key).await?.as_deref() != Some(sealed) {
            continue;
        }
        let mut batch = Batch::new(shard.clone());
        batch.delete(key.to_vec(), Expect::Value(sealed.to_vec()));
        match backend.commit(batch).await {
            Ok(()) | Err(crate::backend::BackendError::Conflict) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
