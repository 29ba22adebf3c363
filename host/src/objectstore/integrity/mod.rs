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
//! - each partition's kept counts of keys and bytes against a recount of
//!   its entries (for applications whose counts are kept: a host of this
//!   version has started them);
//! - each partition's index of names: a whole tree (every page there and
//!   opening, ranges and order right), holding exactly the names of the
//!   entries that open. A partition without an index is not damaged: its
//!   first use builds one (data written before the index existed);
//! - likewise each index of store names and of a store's partition names,
//!   against the names of the store and partition records that open.
//!
//! What can be derived (the expiry index, the usage counters, the master
//! check, a request-rate bucket, an index of names of any kind) the repair writes
//! again. What cannot (an
//! entry, a store or partition's settings, an application's keys, a
//! credential, a day's request counts) it *sets aside*: moves it, still
//! sealed, under the quarantine prefix (`keys::quarantined`), where no
//! listing, count or sweep reads it and an operator can still find it.
//! Nothing else is written.
//!
//! On clean data the walk holds nothing per key. Per partition it keeps
//! counts and three digests (of its entries' names, and of its expiry
//! index records as the entries call for them and as found), and it checks
//! an index by walking its tree from the root, an inner page's children at
//! a time (holding the ids of that tree's pages it has seen). What it finds
//! damaged it holds until the report: a record to set aside with its sealed
//! bytes. A partition whose name digests differ is read again, its names
//! held this time, to say what differs; a difference in any partition's
//! expiries reads the expiry index again, keeping the records of the
//! partitions that differ.
//!
//! A walk that stops at damage it cannot read past compares nothing, and a
//! repair after it writes nothing derived (expiry index, counts, indexes of
//! names): it would take what it did not read for missing.
//!
//! Both are offline tools: a check beside running hosts may read a
//! partition between two of a bulk deletion's batches, and a repair beside
//! them may write over what they write.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | `report` | what a check reports: [`Report`], [`Damage`] and its kinds, and how a walk's findings are named |
//! | `walk` | the walk itself: reading every record once and opening it under its keys |
//! | `compare` | after the walk: the expiry index, usage counters and indexes of names against what the records say |
//! | `repair` | carrying out each remedy: writing again what is derived, setting aside what does not open |

mod compare;
mod repair;
mod report;
mod walk;

use crate::backend::Backend;
use crate::encryption::MasterKey;

use crate::objectstore::Error;
use walk::Walk;

pub use report::{Damage, DamageKind, KindSize, RecordKind, Remedy, Report};

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
