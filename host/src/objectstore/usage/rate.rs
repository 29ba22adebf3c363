//! The request rate of an application, shared by every host.
//!
//! A token bucket per application, shared by every host: `R` tokens at
//! most, refilled at `R` per second, kept in one record. A host takes tokens
//! from it a few at a time (a lease of a twentieth of a second's worth, at
//! least one) with a conditional write, and admits requests from its lease
//! with no round trip to the backend. A lease is good for [`LEASE_MS`] of
//! the clock; tokens unused by then are lost, never given back. The tokens
//! a running lease may still give out (all but the one its request used at
//! once) count against the bucket's capacity, so over any `t` seconds all
//! hosts together admit at most `R + R·t` requests. The
//! hosts' clocks are assumed to agree (NTP); a host whose clock runs `d`
//! ahead of the others can make the bucket refill up to `R·d` early.

use std::time::Duration;

use crate::backend::{Batch, Expect};
use crate::encryption::Tag;

use super::AppUsage;
use crate::objectstore::application::{AppState, Application};
use crate::objectstore::keys::RecordKey;
use crate::objectstore::record::{RateLease, RateRecord};
use crate::objectstore::sealed::Commit;
use crate::objectstore::{Error, Inner, MAX_CONFLICT_RETRIES};

/// How long a lease of request tokens lasts, in milliseconds of the clock.
/// Long enough that a busy host asks the backend a few times a second,
/// short enough that tokens a host leased but does not need soon come back
/// to the bucket (and so to the other hosts) quickly.
const LEASE_MS: u64 = 250;

/// A lease holds this fraction of a second's tokens (at least one).
const LEASES_PER_SECOND: u32 = 20;

/// A clock that steps back further than this (an operator's correction) is
/// taken as the new time at once. A smaller step back is another host's
/// clock running a little behind: it refills nothing and does not move the
/// bucket's time back, so that the same interval is never refilled twice.
const CLOCK_STEP_MS: u64 = 10_000;

/// Request tokens this host took from the shared bucket.
pub(super) struct Lease {
    tokens: u64,
    at_ms: u64,
}

impl AppUsage {
    /// Takes one token of this host's lease, if it has one good at `now`.
    fn take_leased(&self, now: u64) -> bool {
        let mut lease = self.lease.lock().expect("lease lock");
        match lease.as_mut() {
            Some(l) if l.tokens > 0 && lease_is_running(l.at_ms, now) => {
                l.tokens -= 1;
                true
            }
            _ => false,
        }
    }

    fn keep_lease(&self, tokens: u64, at_ms: u64) {
        *self.lease.lock().expect("lease lock") = Some(Lease { tokens, at_ms });
    }
}

/// Whether a lease taken at `at_ms` may be used at `now`.
fn lease_is_running(at_ms: u64, now: u64) -> bool {
    now >= at_ms && now - at_ms < LEASE_MS
}

/// How many tokens a host asks for at a time.
fn lease_size(rate: u32) -> u64 {
    u64::from(rate / LEASES_PER_SECOND).max(1)
}

/// A full bucket of `rate` tokens, as of `now`.
fn full_bucket(rate: u32, now: u64) -> RateRecord {
    RateRecord {
        level_milli: u64::from(rate) * 1000,
        at_ms: now,
        leases: Vec::new(),
    }
}

/// Brings `bucket` (of `rate` tokens, refilled at `rate` per second) up to
/// `now` and takes up to `want` tokens from it: how many it took, or how
/// long to wait for one.
///
/// The tokens a running lease may still give out count against the
/// capacity: the bucket's level plus what running leases hold never exceeds
/// it, at any moment between two calls. That is what keeps tokens leased
/// before a moment and used after it from adding to a full bucket, and so
/// gives the bound `R + R·t` over every interval. A lease's first token is
/// not held: the request that took the lease used it at once (so with
/// leases of one token, under 40 requests a second, this is exactly a token
/// bucket).
fn take_tokens(bucket: &mut RateRecord, rate: u32, now: u64, want: u64) -> Result<u64, Duration> {
    let rate = u64::from(rate);
    let capacity = rate * 1000;
    let lease_end = |l: &RateLease| l.at_ms.saturating_add(LEASE_MS);
    // Leases from a clock far ahead (stepped back since) are over: their
    // host no longer uses them.
    bucket
        .leases
        .retain(|l| l.at_ms <= now.saturating_add(CLOCK_STEP_MS));
    bucket.leases.sort_by_key(lease_end);
    let held = |l: &RateLease| l.tokens.saturating_sub(1).saturating_mul(1000);
    let mut leased: u64 = bucket.leases.iter().map(held).sum();
    let mut level = bucket.level_milli.min(capacity.saturating_sub(leased));
    if now >= bucket.at_ms {
        // Refill piece by piece, the room growing as leases end. `rate`
        // tokens a second are `rate` thousandths a millisecond.
        let mut at = bucket.at_ms;
        for lease in bucket.leases.iter().filter(|l| lease_end(l) <= now) {
            let end = lease_end(lease);
            if end > at {
                let refilled = level.saturating_add((end - at).saturating_mul(rate));
                level = refilled.min(capacity.saturating_sub(leased));
                at = end;
            }
            leased = leased.saturating_sub(held(lease));
        }
        let refilled = level.saturating_add((now - at).saturating_mul(rate));
        level = refilled.min(capacity.saturating_sub(leased));
        bucket.at_ms = now;
    } else if bucket.at_ms - now > CLOCK_STEP_MS {
        bucket.at_ms = now;
    }
    bucket.leases.retain(|l| now < lease_end(l));
    bucket.level_milli = level;
    let tokens = (level / 1000).min(want);
    if tokens == 0 {
        let refill_ms = (1000 - level).div_ceil(rate);
        let room = capacity.saturating_sub(leased);
        let lease_end_ms = match bucket.leases.first() {
            Some(first) if room < 1000 => lease_end(first).saturating_sub(now),
            _ => 0,
        };
        return Err(Duration::from_millis(refill_ms.max(lease_end_ms).max(1)));
    }
    bucket.level_milli -= tokens * 1000;
    bucket.leases.push(RateLease { at_ms: now, tokens });
    Ok(tokens)
}

impl Application {
    /// Counts one request against `store`, or refuses it when the
    /// application is over its request rate (summed over every host).
    pub(in crate::objectstore) async fn admit(&self, store: Tag) -> Result<(), Error> {
        let usage = &self.state.usage;
        if let Some(rate) = self
            .inner
            .config
            .limits
            .requests_per_second
            .filter(|&r| r > 0)
            && !usage.take_leased(self.inner.now_ms())
        {
            let _one = usage.leasing.lock().await;
            // The lease request before this one may have brought tokens.
            let now = self.inner.now_ms();
            if !usage.take_leased(now) {
                let tokens = self.inner.lease_tokens(&self.state, rate, now).await?;
                usage.keep_lease(tokens - 1, now);
            }
        }
        usage.count_request(store, self.inner.now_ms());
        Ok(())
    }
}

impl Inner {
    /// Takes a lease of request tokens from the application's shared
    /// bucket: how many (at least one), or `RateLimited`.
    async fn lease_tokens(&self, app: &AppState, rate: u32, now: u64) -> Result<u64, Error> {
        let key = RecordKey::RateBucket(app.tag);
        let bytes = key.encode();
        let table = self.table(app);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (mut bucket, expect) = match table.get::<RateRecord>(&key).await? {
                Some(opened) => (opened.record, Expect::Value(opened.sealed)),
                None => (full_bucket(rate, now), Expect::Absent),
            };
            let tokens = take_tokens(&mut bucket, rate, now, lease_size(rate))
                .map_err(|retry_after| Error::RateLimited { retry_after })?;
            let mut batch = Batch::new(key.shard().encode());
            batch.put(bytes.clone(), table.seal(&bytes, &bucket), expect);
            if table.commit(batch).await? == Commit::Done {
                return Ok(tokens);
            }
        }
        Err(Error::Contended("the request rate is"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses_with_a_wait() {
        let mut bucket = full_bucket(5, 0);
        let mut taken = 0;
        while let Ok(n) = take_tokens(&mut bucket, 5, 0, 1) {
            taken += n;
        }
        assert_eq!(taken, 5);
        match take_tokens(&mut bucket, 5, 0, 1) {
            Err(wait) => assert!(wait > Duration::ZERO && wait <= Duration::from_millis(250)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_bucket_refills_with_time_and_survives_a_clock_stepping_back() {
        let start = 10_000_000;
        let mut bucket = full_bucket(2, start);
        let mut take = |at: u64| take_tokens(&mut bucket, 2, at, 1).is_ok();
        assert!(take(start) && take(start) && !take(start));
        // The two tokens leased at `start` fill the capacity until their
        // leases end; then half a second's refill brings one back.
        assert!(!take(start + LEASE_MS - 1));
        assert!(take(start + LEASE_MS + 500));
        assert!(!take(start + LEASE_MS + 500));
        // The clock steps back an hour: the bucket counts on from there.
        let back = start - 3_600_000;
        assert!(!take(back));
        assert!(take(back + 500));
    }

    #[test]
    fn leased_tokens_count_against_the_capacity_until_their_lease_ends() {
        // A host leases the whole bucket and uses one token at once: the
        // nine it holds leave room for one more while its lease runs.
        let mut bucket = full_bucket(10, 0);
        assert_eq!(take_tokens(&mut bucket, 10, 0, 10), Ok(10));
        assert!(take_tokens(&mut bucket, 10, 99, 10).is_err());
        assert_eq!(take_tokens(&mut bucket, 10, 200, 10), Ok(1));
        // Once the lease ends (at 250), the bucket refills freely: 50 ms
        // capped beside the nine, then 300 ms more.
        assert_eq!(take_tokens(&mut bucket, 10, LEASE_MS + 300, 10), Ok(3));
    }
}
