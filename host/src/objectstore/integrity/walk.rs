//! The walk: every record of a backend read once, in key order, and each
//! opened under the keys its kind is sealed with. What it learns is kept
//! in [`Walk`] for the comparisons (`compare`) and the repair (`repair`).

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest as _, Sha256};

use crate::backend::{Backend, BackendError, Shards};
use crate::encryption::{Sealer, Tag, hex};

use super::report::{DamageKind, RecordKind, Remedy};
use crate::objectstore::Error;
use crate::objectstore::index::Scope;
use crate::objectstore::keys::{EntryId, PartitionId, Prefix, RecordKey, quarantined};
use crate::objectstore::record::{
    AppRecord, CountsRecord, CredentialRecord, EntryRecord, IndexPage, MasterCheck,
    PartitionRecord, RateRecord, Record, StatsRecord, StoreRecord, StoreTombstone, UsageRecord,
};
use crate::objectstore::sealed::SealedTable;
use crate::objectstore::usage::kept;

/// How many records the walk, and each second reading, reads per backend
/// call.
const SCAN_CHUNK: usize = 1024;

/// An application's keys, as its record holds them.
pub(super) struct AppKeys {
    pub(super) name: String,
    pub(super) sealer: Sealer,
}

/// Where a damage is, by ids; named once the walk knows the names.
pub(super) struct Place {
    pub(super) app: Option<Tag>,
    pub(super) store: Option<Tag>,
    pub(super) partition: Option<PartitionId>,
    pub(super) key: Vec<u8>,
}

impl Place {
    fn of(key: &[u8]) -> Self {
        let (app, store, partition) = match RecordKey::parse(key) {
            Some(RecordKey::App(app)) | Some(RecordKey::RateBucket(app)) => (Some(app), None, None),
            Some(RecordKey::NamePage { app, store, .. }) => (Some(app), store, None),
            Some(RecordKey::Store { app, store })
            | Some(RecordKey::Stats { app, store, .. })
            | Some(RecordKey::Usage { app, store }) => (Some(app), Some(store), None),
            Some(RecordKey::Partition(id))
            | Some(RecordKey::IndexPage { partition: id, .. })
            | Some(RecordKey::Counts { partition: id, .. })
            | Some(RecordKey::Entry(EntryId { partition: id, .. }))
            | Some(RecordKey::Expiry {
                entry: EntryId { partition: id, .. },
                ..
            })
            | Some(RecordKey::LegacyExpiry {
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
pub(super) struct Found {
    pub(super) kind: DamageKind,
    pub(super) place: Place,
    pub(super) remedy: Remedy,
}

/// Keys and bytes of a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) keys: i64,
    pub(super) bytes: i64,
}

/// A set of byte strings in a few bytes: how many there are, and the sum of
/// their SHA-256 digests (the first 16 bytes, modulo 2^128). The same set
/// always gives the same digest, in any order; two sets that differ give
/// the same one with a chance of about 2^-128, since each digest is as good
/// as random. So the walk compares ten million names with their index
/// without holding either, and reads one partition again, to say what
/// differs, only when its digests do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Digest {
    pub(super) count: usize,
    sum: u128,
}

impl Digest {
    pub(super) fn add(&mut self, item: &[u8]) {
        let hash = Sha256::digest(item);
        let low: [u8; 16] = hash[..16].try_into().expect("16 of 32 bytes");
        self.count += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(low));
    }
}

/// What the walk saw of one partition.
#[derive(Default)]
pub(super) struct Seen {
    /// The names of its entries that open.
    pub(super) names: Digest,
    /// Its index pages found (under a known application), and whether one
    /// of them does not open.
    pub(super) pages: usize,
    pub(super) unopened_pages: bool,
    /// Its part of the expiry index (record keys) as the entries that open
    /// say it should be, and as found.
    pub(super) expected_expiries: Digest,
    pub(super) expiries: Digest,
}

/// Everything one walk learned.
pub(super) struct Walk<'a> {
    pub(super) master: &'a Sealer,
    pub(super) records: u64,
    pub(super) quarantined: u64,
    pub(super) apps: HashMap<Tag, AppKeys>,
    pub(super) store_names: HashMap<(Tag, Tag), String>,
    pub(super) partition_names: HashMap<PartitionId, String>,
    pub(super) found: Vec<Found>,
    /// Records to set aside: key and sealed bytes.
    pub(super) set_aside: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the master check needs writing again.
    pub(super) master_check_missing: bool,
    /// Rate buckets to delete (a fresh bucket is full): key and bytes.
    pub(super) rate_buckets: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the walk read every record: one that stopped at damage it
    /// could not read past compares nothing (it would find differences in
    /// what it did not read, and a repair would act on them).
    pub(super) complete: bool,
    /// What the walk saw of each partition's names and expiries, in a few
    /// bytes each (see [`Seen`]).
    pub(super) seen: BTreeMap<PartitionId, Seen>,
    /// The expiry index records that the entries call for and are not
    /// there (by the tick each key expires in), and those there that no
    /// entry calls for (in either layout).
    pub(super) missing_expiries: Vec<(u64, EntryId)>,
    pub(super) stale_expiries: Vec<RecordKey>,
    /// Per partition: every entry there is, and those that stay after
    /// repair.
    pub(super) counted_all: BTreeMap<PartitionId, Counts>,
    pub(super) counted_kept: BTreeMap<PartitionId, Counts>,
    /// Each partition's kept counts found, summed over its slots (`None`:
    /// one does not open).
    pub(super) counts: BTreeMap<PartitionId, Option<Counts>>,
    /// The partitions whose kept counts have a base: their index of names
    /// is built, and one without a page is empty.
    pub(super) counted_base: HashSet<PartitionId>,
    /// Partitions whose index repair writes again.
    pub(super) rebuild_index: Vec<PartitionId>,
    /// The pages of each index of store or partition names as found
    /// (`None`: does not open).
    pub(super) name_pages: BTreeMap<Scope, HashMap<u64, Option<IndexPage>>>,
    /// Indexes of store or partition names that repair writes again.
    pub(super) rebuild_names: Vec<Scope>,
    /// Records and bytes at rest (keys and sealed values) by kind.
    pub(super) sizes: BTreeMap<&'static str, (u64, u64)>,
}

impl<'a> Walk<'a> {
    pub(super) async fn run(backend: &dyn Backend, master: &'a Sealer) -> Result<Walk<'a>, Error> {
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
            complete: false,
            seen: BTreeMap::new(),
            missing_expiries: Vec::new(),
            stale_expiries: Vec::new(),
            counted_all: BTreeMap::new(),
            counted_kept: BTreeMap::new(),
            counts: BTreeMap::new(),
            counted_base: HashSet::new(),
            rebuild_index: Vec::new(),
            name_pages: BTreeMap::new(),
            rebuild_names: Vec::new(),
            sizes: BTreeMap::new(),
        };
        walk.read_applications(backend).await?;
        walk.read_all(backend).await?;
        if walk.complete {
            walk.compare_expiries(backend).await?;
            walk.compare_usage();
            walk.compare_indexes(backend).await?;
            walk.compare_name_indexes().await;
        } else {
            walk.leave_derived_alone();
        }
        Ok(walk)
    }

    /// After a walk that stopped at damage: what is derived from the whole
    /// data (counts, indexes of names) is not written again from the part
    /// read, so a record of theirs that does not open is left as it is.
    fn leave_derived_alone(&mut self) {
        for found in &mut self.found {
            if let DamageKind::Unreadable(RecordKind::Usage | RecordKind::IndexPage) = found.kind {
                found.remedy = Remedy::None;
            }
        }
    }

    pub(super) fn found(&mut self, kind: DamageKind, key: &[u8], remedy: Remedy) {
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
            let chunk = scan.next_chunk_of(SCAN_CHUNK).await?;
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
        let read = scan_in_order(backend, b"", |record| match record {
            Scanned::OutOfOrder(key) => self.found(
                DamageKind::Engine(format!("key {} is out of order", hex(key))),
                key,
                Remedy::None,
            ),
            Scanned::Record(key, sealed) => {
                self.records += 1;
                let parsed = RecordKey::parse(key);
                let size = self.sizes.entry(size_kind(parsed, key)).or_default();
                size.0 += 1;
                size.1 += (key.len() + sealed.len()) as u64;
                self.read_one(parsed, key, sealed);
            }
        });
        match read.await? {
            Ok(()) => self.complete = true,
            // The walk cannot go on past a damaged page: what it has not
            // seen is reported as unknown, never as clean.
            Err(what) => self.found(DamageKind::Engine(what), b"", Remedy::None),
        }
        Ok(())
    }

    fn read_one(&mut self, parsed: Option<RecordKey>, key: &[u8], sealed: &[u8]) {
        let Some(record_key) = parsed else {
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
            RecordKey::Usage { app, .. } => {
                // An earlier version's counters, deleted by the first host of
                // this one: only checked to open.
                let _ = self.open_derived::<UsageRecord>(app, key, sealed, RecordKind::Usage);
            }
            RecordKey::Counts { partition, slot } => {
                if slot == kept::BASE {
                    self.counted_base.insert(partition);
                }
                // Counts are derived: one that does not open is rebuilt, not
                // set aside.
                let Some(record) = self.open_derived::<CountsRecord>(
                    partition.app,
                    key,
                    sealed,
                    RecordKind::Usage,
                ) else {
                    return;
                };
                let sum = self
                    .counts
                    .entry(partition)
                    .or_insert(Some(Counts::default()));
                match (sum.as_mut(), record) {
                    (Some(sum), Some(r)) => add(
                        sum,
                        Counts {
                            keys: r.keys,
                            bytes: r.bytes,
                        },
                    ),
                    _ => *sum = None,
                }
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
                let store = id.partition;
                let footprint = Counts {
                    keys: 1,
                    bytes: (key.len() + sealed.len()) as i64,
                };
                add(self.counted_all.entry(store).or_default(), footprint);
                if let Some(r) =
                    self.open_of::<EntryRecord>(id.partition.app, key, sealed, RecordKind::Entry)
                {
                    add(self.counted_kept.entry(store).or_default(), footprint);
                    let seen = self.seen.entry(id.partition).or_default();
                    seen.names.add(r.key.as_bytes());
                    if let Some(at) = r.expires {
                        let expiry = RecordKey::expiry(at, id).encode();
                        seen.expected_expiries.add(&expiry);
                    }
                }
            }
            RecordKey::Expiry { .. } | RecordKey::LegacyExpiry { .. } => {
                // Either layout, as the entry this version would write.
                if let Some((tick, entry)) = record_key.expiring() {
                    let expiry = RecordKey::Expiry { tick, entry }.encode();
                    let seen = self.seen.entry(entry.partition).or_default();
                    seen.expiries.add(&expiry);
                }
            }
            RecordKey::IndexPage { partition, .. } => {
                // Pages are derived: an unreadable one is rebuilt with its
                // tree, not set aside.
                let Some(record) = self.open_derived::<IndexPage>(
                    partition.app,
                    key,
                    sealed,
                    RecordKind::IndexPage,
                ) else {
                    return;
                };
                let seen = self.seen.entry(partition).or_default();
                seen.pages += 1;
                seen.unopened_pages |= record.is_none();
            }
            RecordKey::NamePage { app, store, page } => {
                // Derived from the store or partition records, as a
                // partition's index pages are from its entries.
                let Some(record) = self.open_derived(app, key, sealed, RecordKind::IndexPage)
                else {
                    return;
                };
                let scope = match store {
                    None => Scope::Stores(app),
                    Some(store) => Scope::Partitions { app, store },
                };
                self.name_pages
                    .entry(scope)
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
}

/// The record `sealed` holds for `key`, if it opens and parses.
pub(super) fn open<R: Record>(sealer: &Sealer, key: &[u8], sealed: &[u8]) -> Option<R> {
    R::decode(&sealer.open(key, sealed).ok()?).ok()
}

fn add(total: &mut Counts, more: Counts) {
    total.keys += more.keys;
    total.bytes += more.bytes;
}

/// What a record is, in the words of the report's sizes.
fn size_kind(parsed: Option<RecordKey>, key: &[u8]) -> &'static str {
    match parsed {
        Some(RecordKey::MasterCheck) => "master check",
        Some(RecordKey::App(_)) => "applications",
        Some(RecordKey::Credential(_)) => "credentials",
        Some(RecordKey::Store { .. }) => "stores",
        Some(RecordKey::StoreTombstone { .. }) => "store tombstones",
        Some(RecordKey::Partition(_)) => "partitions",
        Some(RecordKey::Stats { .. }) => "daily stats",
        Some(RecordKey::Usage { .. }) => "usage (an earlier version's)",
        Some(RecordKey::Counts { .. }) => "kept counts",
        Some(RecordKey::RateBucket(_)) => "rate buckets",
        Some(RecordKey::Entry(_)) => "entries",
        Some(RecordKey::Expiry { .. } | RecordKey::LegacyExpiry { .. }) => "expiry index",
        Some(RecordKey::IndexPage { .. }) => "index of key names",
        Some(RecordKey::NamePage { .. }) => "index of store and partition names",
        None if quarantined(key).is_some() => "set aside by repairs",
        None => "malformed keys",
    }
}

/// What [`scan_in_order`] hands on: a record, or the key of one that came
/// out of order (and is skipped).
pub(super) enum Scanned<'a> {
    Record(&'a [u8], &'a [u8]),
    OutOfOrder(&'a [u8]),
}

/// Hands every record under `prefix` to `each`, in key order, from every
/// shard (a record in the wrong one included), as the walk and the second
/// readings read them. A key not above the one before it is handed on as
/// [`Scanned::OutOfOrder`] and skipped. `Ok(Err(_))`: the engine cannot
/// read past damage, and `each` has seen the records before it.
pub(super) async fn scan_in_order(
    backend: &dyn Backend,
    prefix: &[u8],
    mut each: impl FnMut(Scanned<'_>),
) -> Result<Result<(), String>, Error> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = match backend
            .scan(Shards::ALL, prefix, after.as_deref(), SCAN_CHUNK)
            .await
        {
            Ok(chunk) => chunk,
            Err(BackendError::Damaged(what)) => return Ok(Err(what)),
            Err(e) => return Err(e.into()),
        };
        let ended = chunk.len() < SCAN_CHUNK;
        for (key, sealed) in chunk {
            if after.as_ref().is_some_and(|a| key <= *a) {
                each(Scanned::OutOfOrder(&key));
                continue;
            }
            each(Scanned::Record(&key, &sealed));
            after = Some(key);
        }
        if ended {
            return Ok(Ok(()));
        }
    }
}
