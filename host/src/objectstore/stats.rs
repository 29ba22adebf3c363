//! Request statistics: counts per store and day, kept in memory as requests
//! come and added to sealed per-day records by a flush every second and at
//! shutdown. Each host adds only its own counts, with a conditional write,
//! so the records hold the sum over hosts: nothing counted twice, nothing
//! lost on a clean stop. Queries add what this host has not flushed yet.
//!
//! The same flush reads every host's totals of keys and bytes (see
//! `usage`; a sole host knows them already), before it records each
//! store's size: the size is the shared total, never a sum of hosts'
//! views.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Batch, Expect};
use crate::clock::day_of;
use crate::encryption::Tag;

use super::application::{AppState, Application};
use super::keys::{Prefix, RecordKey};
use super::record::StatsRecord;
use super::sealed::Commit;
use super::types::DayStats;
use super::{Error, Inner, MAX_CONFLICT_RETRIES, ObjectStore, Periodic};

impl ObjectStore {
    /// Reads the kept key and byte counts again (what other hosts changed
    /// since; a sole host settles its own changes instead, see
    /// `usage::counts`), and adds the request counts gathered since the last flush to
    /// the stored per-day counts, with each store's current size. Request
    /// counts whose write fails are kept for the next flush.
    pub async fn flush_stats(&self) -> Result<(), Error> {
        let apps: Vec<Arc<AppState>> = self
            .inner
            .apps
            .lock()
            .expect("apps lock")
            .values()
            .cloned()
            .collect();
        let mut usage_failure = None;
        for app in apps {
            // A failed read is tried again at the next flush; the request
            // counts are still saved.
            if let Err(e) = self.inner.refresh_usage(&app).await {
                usage_failure.get_or_insert(e);
            }
            let _moving = app.usage.flushing.lock().await;
            let pending = app.usage.take_pending();
            let mut unflushed = HashMap::new();
            let mut failure = None;
            for ((store, day), requests) in pending {
                if failure.is_some() {
                    unflushed.insert((store, day), requests);
                    continue;
                }
                if let Err(e) = self.inner.add_requests(&app, store, day, requests).await {
                    unflushed.insert((store, day), requests);
                    failure = Some(e);
                }
            }
            app.usage.restore_pending(unflushed);
            if let Some(e) = failure {
                return Err(e);
            }
        }
        usage_failure.map_or(Ok(()), Err)
    }

    /// Runs [`flush_stats`](Self::flush_stats) every `interval` until
    /// stopped.
    pub fn spawn_stats_flusher(&self, interval: Duration) -> Periodic {
        self.every(interval, |store| async move {
            match store.flush_stats().await {
                Ok(()) => {}
                // Kept for the next flush; the fault is logged by the
                // health monitor.
                Err(e) if e.is_writes_failing() => {
                    tracing::debug!("flushing request counts failed: {e}")
                }
                Err(e) => tracing::warn!("flushing request counts failed: {e}"),
            }
        })
    }
}

impl Inner {
    /// Adds `requests` to the count of `store` on `day`.
    async fn add_requests(
        &self,
        app: &AppState,
        store: Tag,
        day: u32,
        requests: u64,
    ) -> Result<(), Error> {
        let key = RecordKey::Stats {
            app: app.tag,
            store,
            day,
        };
        let table = self.table(app);
        let size = app.usage.footprint(store);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = table.get::<StatsRecord>(&key).await?;
            let (mut record, expect) = match current {
                Some(opened) => (opened.record, Expect::Value(opened.sealed)),
                None => (StatsRecord::default(), Expect::Absent),
            };
            record.requests += requests;
            record.keys = size.keys;
            record.bytes = size.bytes;
            let bytes = key.encode();
            let mut batch = Batch::new(key.shard().encode());
            batch.put(bytes.clone(), table.seal(&bytes, &record), expect);
            if table.commit(batch).await? == Commit::Done {
                return Ok(());
            }
        }
        Err(Error::Contended("request counts are"))
    }
}

impl Application {
    /// Requests per day from `first_day` to `last_day` (days since the
    /// epoch), of one store or (`None`) of all the application's stores,
    /// with the size at each day's last count. Includes requests not yet
    /// flushed; today's size is the current one.
    pub async fn daily_stats(
        &self,
        store: Option<&str>,
        first_day: u32,
        last_day: u32,
    ) -> Result<BTreeMap<u32, DayStats>, Error> {
        let app = &self.state;
        let store_tag = match store {
            Some(name) => {
                self.inner.check_name(name, "store name")?;
                Some(app.store_tag(name))
            }
            None => None,
        };
        let days_wanted = first_day..=last_day;
        let mut days: BTreeMap<u32, DayStats> = BTreeMap::new();
        let table = self.table();
        // Stored counts and those not yet flushed, as of one moment.
        let _still = app.usage.flushing.lock().await;
        let mut scan = table.scan(Prefix::Stats {
            app: app.tag,
            store: store_tag,
        });
        loop {
            let chunk = scan.next_chunk_of(1024).await?;
            if chunk.is_empty() {
                break;
            }
            for (key, sealed) in &chunk {
                let Some(RecordKey::Stats { day, .. }) = RecordKey::parse(key) else {
                    return Err(Error::Integrity);
                };
                if !days_wanted.contains(&day) {
                    continue;
                }
                let record: StatsRecord = table.open(key, sealed)?;
                let d = days.entry(day).or_default();
                d.requests += record.requests;
                d.keys += record.keys;
                d.bytes += record.bytes;
            }
        }
        for ((tag, day), n) in app.usage.pending() {
            if store_tag.is_none_or(|s| s == tag) && days_wanted.contains(&day) {
                days.entry(day).or_default().requests += n;
            }
        }
        let today = day_of(self.inner.now_ms());
        if let Some(d) = days.get_mut(&today) {
            let now = match store_tag {
                Some(tag) => app.usage.footprint(tag),
                None => app.usage.total(),
            };
            (d.keys, d.bytes) = (now.keys, now.bytes);
        }
        Ok(days)
    }
}
