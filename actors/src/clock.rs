//! Wall-clock time as the pool records it: unix milliseconds, and RFC 3339 for reports.
//!
//! Durations and deadlines use `tokio::time::Instant`; these are for what is stored, shown
//! or compared across processes (usage windows, budget periods, task timestamps).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `ms` (unix) as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(at(ms)).to_string()
}

/// `ms` (unix) as RFC 3339 to the second, UTC (reset times, budget periods).
pub fn rfc3339_seconds(ms: i64) -> String {
    humantime::format_rfc3339_seconds(at(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_known_instant() {
        // 2026-01-02T03:04:05.678Z, computed by hand: 20455 days + 3h4m5.678s.
        let ms: i64 = (20_455 * 86_400 + 3 * 3_600 + 4 * 60 + 5) * 1_000 + 678;
        assert_eq!(rfc3339(ms), "2026-01-02T03:04:05.678Z");
        assert_eq!(rfc3339_seconds(ms), "2026-01-02T03:04:05Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }
}
