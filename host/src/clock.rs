//! Time: where "now" comes from, and UTC calendar days.
//!
//! Everything that depends on the time of day (TTL and rolling TTL, token
//! expiry, the request-rate bucket, daily statistics) asks a [`Clock`]. A
//! host uses the [`SystemClock`]; a test uses a [`ManualClock`] and moves it
//! forward instead of sleeping. Request deadlines of guests are not on this
//! clock: they bound real CPU and wall time, so they use the monotonic clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Days since the Unix epoch (UTC).
    fn today(&self) -> u32 {
        day_of(self.now_ms())
    }
}

/// A clock shared by every part of a host.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms` milliseconds since the epoch.
    pub fn at(ms: u64) -> Self {
        Self(AtomicU64::new(ms))
    }

    /// A clock reading the system time now, then standing still.
    pub fn starting_now() -> Self {
        Self::at(SystemClock.now_ms())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// Days since the Unix epoch of a time in milliseconds.
pub fn day_of(ms: u64) -> u32 {
    (ms / DAY_MS) as u32
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Reads an ISO-8601 date `YYYY-MM-DD` from 1970 to 9999, optionally
/// followed by a time (`T...`), which is ignored; `None` for anything else,
/// including days past the month's end (2026-02-30).
pub fn parse_day(text: &str) -> Option<u32> {
    let date = text.split('T').next().unwrap_or_default();
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (year, month, day): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    u32::try_from(days).ok()
}

/// The first day of the month `day` is in.
pub fn first_of_month(day: u32) -> u32 {
    let (y, m, _) = civil_from_days(i64::from(day));
    days_from_civil(y, m, 1) as u32
}

/// The start of a day as `2026-11-24T00:00:00Z`.
pub fn day_timestamp(day: u32) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
}

/// Milliseconds since the epoch as `2026-11-24T09:30:05.123Z`.
pub fn iso_millis(ms: u64) -> String {
    let (days, ms_of_day) = (ms / DAY_MS, ms % DAY_MS);
    let (y, m, d) = civil_from_days(days as i64);
    let (secs, millis) = (ms_of_day / 1000, ms_of_day % 1000);
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    if y > 9999 {
        // Past four digits (a far expiry): the general formatter.
        return format!("{y:04}-{m:02}-{d:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z");
    }
    // Digit by digit: a listing writes two of these per key, and `format!`
    // took more of a page's time than the rest of its JSON.
    let mut out = String::with_capacity(24);
    let fields = [
        (y as u64, 4, '-'),
        (u64::from(m), 2, '-'),
        (u64::from(d), 2, 'T'),
        (hours, 2, ':'),
        (minutes, 2, ':'),
        (seconds, 2, '.'),
        (millis, 3, 'Z'),
    ];
    for (value, width, after) in fields {
        for place in (0..width).rev() {
            let digit = (value / 10u64.pow(place) % 10) as u8;
            out.push(char::from(b'0' + digit));
        }
        out.push(after);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_iso_8601_with_milliseconds() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_795_600_861_999, "2026-11-25T10:01:01.999Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (253_402_300_800_000, "10000-01-01T00:00:00.000Z"),
        ];
        for (ms, text) in cases {
            assert_eq!(iso_millis(ms), text, "{ms} ms");
        }
        // Every field at each of its widths' edges, against the general
        // formatter.
        let mut ms = 86_399_999;
        while ms < 253_402_300_800_000 {
            let (days, of_day) = (ms / DAY_MS, ms % DAY_MS);
            let (y, m, d) = civil_from_days(days as i64);
            let s = of_day / 1000;
            let expected = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                s / 3600,
                s / 60 % 60,
                s % 60,
                of_day % 1000
            );
            assert_eq!(iso_millis(ms), expected);
            ms = ms * 3 / 2 + 7_919;
        }
    }

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_day("1970-01-01").unwrap(), 0);
        assert_eq!(parse_day("2000-03-01").unwrap(), 11_017);
        let day = parse_day("2026-11-24T13:00:00Z").unwrap();
        assert_eq!(day_timestamp(day), "2026-11-24T00:00:00Z");
        assert_eq!(day_timestamp(first_of_month(day)), "2026-11-01T00:00:00Z");
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso_millis(u64::from(day) * 86_400_000 + 13 * 3_600_000 + 61_005),
            "2026-11-24T13:01:01.005Z"
        );
        assert_eq!(
            day_timestamp(parse_day("2024-02-29").unwrap()),
            "2024-02-29T00:00:00Z"
        );
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "26-1-1x",
            "",
            "2026-11",
            "1969-12-31",
        ] {
            assert!(parse_day(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(86_400_000 + 1500);
        assert_eq!(
            (clock.now_ms(), clock.now_secs(), clock.today()),
            (86_401_500, 86_401, 1)
        );
        clock.advance(Duration::from_millis(500));
        assert_eq!(clock.now_secs(), 86_402);
    }
}
