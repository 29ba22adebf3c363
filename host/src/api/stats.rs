//! The Stats API (requests per day or month at organization, environment or
//! store level, plus key counts and bytes stored), an application's usage
//! against its limits, and `/metrics` for Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use http::{StatusCode, header};

use crate::clock::{day_timestamp, first_of_month, parse_day};
use crate::http::{full_body, json_response};
use crate::objectstore::DayStats;

use super::wire::{StatsPoint, Usage, UsageLimits};
use super::{Api, ApiError, ApiResult, Call};

/// The longest date range one stats query may span, so that an answer
/// stays small whatever a client asks.
const MAX_STATS_DAYS: u32 = 5 * 366;

/// Days the Stats API answers by default: the 30 days up to `endDate`.
const DEFAULT_STATS_DAYS: u32 = 30;

/// A Stats API date parameter.
fn day_param(call: &Call, name: &str) -> Result<Option<u32>, ApiError> {
    call.query_param(name)?
        .map(|text| {
            parse_day(&text).ok_or_else(|| {
                ApiError::bad_request(format!("{text:?} is not an ISO-8601 date like 2026-11-24"))
            })
        })
        .transpose()
}

/// Sums daily figures into one point per day or per month: requests add
/// up, and keys and bytes are those of the period's last counted day.
fn points(days: &BTreeMap<u32, DayStats>, start: u32, end: u32, monthly: bool) -> Vec<StatsPoint> {
    let mut points: Vec<(u32, DayStats)> = Vec::new();
    for day in start..=end {
        let bucket = if monthly { first_of_month(day) } else { day };
        let d = days.get(&day).copied().unwrap_or_default();
        match points.last_mut() {
            Some((b, sum)) if *b == bucket => {
                sum.requests += d.requests;
                if d != DayStats::default() {
                    (sum.keys, sum.bytes) = (d.keys, d.bytes);
                }
            }
            _ => points.push((bucket, d)),
        }
    }
    points
        .into_iter()
        .map(|(day, d)| StatsPoint {
            time_stamp: day_timestamp(day),
            object_store_request_count: d.requests,
            key_count: d.keys,
            bytes_stored: d.bytes,
        })
        .collect()
}

/// A Prometheus label value.
fn prometheus_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Api {
    /// `?startDate=&endDate=&period=1day|1month` at the organization, an
    /// environment, or one store of it.
    pub(super) async fn stats(&self, call: &Call) -> ApiResult {
        let org = call.param(&call.params.org);
        let env = call.params.env.as_deref();
        let store = call.params.store.as_deref();
        let end = day_param(call, "endDate")?.unwrap_or_else(|| self.objectstore.clock().today());
        let start = day_param(call, "startDate")?
            .unwrap_or_else(|| end.saturating_sub(DEFAULT_STATS_DAYS - 1));
        if start > end || end - start >= MAX_STATS_DAYS {
            return Err(ApiError::bad_request(format!(
                "startDate must not be after endDate, and the range at most {MAX_STATS_DAYS} days"
            )));
        }
        let monthly = match call.query_param("period")?.as_deref() {
            None | Some("1day") => false,
            Some("1month") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "period must be 1day or 1month, not {other:?}"
                )));
            }
        };
        let grant = call.grant();
        let apps: Vec<&str> = match env {
            Some(env) => vec![self.environment_app(grant, org, env)?],
            None => self
                .environments
                .visible_to(&grant.principal)
                .into_iter()
                .filter(|(o, _, _)| *o == org)
                .map(|(_, _, app)| app)
                .collect(),
        };
        if apps.is_empty() {
            return Err(ApiError::not_found(format!("no organization {org:?}")));
        }
        let mut days: BTreeMap<u32, DayStats> = BTreeMap::new();
        for app in apps {
            let app = self.objectstore.application(app).await?;
            for (day, d) in app.daily_stats(store, start, end).await? {
                let sum = days.entry(day).or_default();
                sum.requests += d.requests;
                sum.keys += d.keys;
                sum.bytes += d.bytes;
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &points(&days, start, end, monthly),
        ))
    }

    /// What an application holds and the limits it runs under.
    pub(super) async fn usage(&self, call: &Call) -> ApiResult {
        let app = self.application(call).await?;
        let footprint = app.footprint();
        let limits = &self.objectstore.config().limits;
        Ok(json_response(
            StatusCode::OK,
            &Usage {
                key_count: footprint.keys,
                bytes_stored: footprint.bytes,
                store_count: app.store_count().await? as u64,
                limits: UsageLimits {
                    requests_per_second: limits.requests_per_second,
                    max_keys: limits.max_keys,
                    max_bytes: limits.max_bytes,
                    max_stores: limits.max_stores as u64,
                    max_key_bytes: limits.max_key_bytes as u64,
                    max_value_bytes: limits.max_value_bytes as u64,
                },
            },
        ))
    }

    /// `/metrics` in Prometheus text format, for the applications the token
    /// may see.
    pub(super) async fn metrics(&self, call: &Call) -> ApiResult {
        let today = self.objectstore.clock().today();
        let mut requests = String::from(
            "# HELP ostore_requests_total Object-store requests of an application.\n\
             # TYPE ostore_requests_total counter\n",
        );
        let mut keys = String::from(
            "# HELP ostore_keys Keys an application holds.\n# TYPE ostore_keys gauge\n",
        );
        let mut bytes = String::from(
            "# HELP ostore_bytes_stored Bytes an application stores at rest.\n\
             # TYPE ostore_bytes_stored gauge\n",
        );
        for (org, env, app) in self.environments.visible_to(&call.grant().principal) {
            let app = self.objectstore.application(app).await?;
            let total: u64 = app
                .daily_stats(None, 0, today)
                .await?
                .values()
                .map(|d| d.requests)
                .sum();
            let labels = format!(
                "organization=\"{}\",environment=\"{}\"",
                prometheus_escape(org),
                prometheus_escape(env)
            );
            let footprint = app.footprint();
            let _ = writeln!(requests, "ostore_requests_total{{{labels}}} {total}");
            let _ = writeln!(keys, "ostore_keys{{{labels}}} {}", footprint.keys);
            let _ = writeln!(bytes, "ostore_bytes_stored{{{labels}}} {}", footprint.bytes);
        }
        requests.push_str(&keys);
        requests.push_str(&bytes);
        requests.push_str(&super::health::metrics(self.objectstore.storage_health()));
        Ok(hyper::Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(full_body(requests))
            .expect("a valid response"))
    }
}
