//! What the dollar budget caps: a run, or a UTC calendar window (day, week, month), with
//! the calendar arithmetic that finds a window's bounds.

/// What the dollar budget caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BudgetPeriod {
    /// One run: a server's life from start to a graceful stop (continued after a crash).
    #[default]
    Run,
    /// A UTC calendar day.
    Day,
    /// A UTC calendar week, Monday to Sunday.
    Week,
    /// A UTC calendar month.
    Month,
}

impl BudgetPeriod {
    /// Its name, as `--budget-period` takes it.
    pub fn name(self) -> &'static str {
        match self {
            BudgetPeriod::Run => "run",
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
        }
    }

    /// The calendar window holding `now_ms` (unix ms), as `[start, end)` in unix ms; `None`
    /// for a run, whose window is the run itself.
    pub fn window(self, now_ms: i64) -> Option<(i64, i64)> {
        const DAY: i64 = 86_400_000;
        let day = now_ms.div_euclid(DAY);
        match self {
            BudgetPeriod::Run => None,
            BudgetPeriod::Day => Some((day * DAY, (day + 1) * DAY)),
            BudgetPeriod::Week => {
                // 1970-01-01 was a Thursday: days since the last Monday.
                let since_monday = (day + 3).rem_euclid(7);
                let start = day - since_monday;
                Some((start * DAY, (start + 7) * DAY))
            }
            BudgetPeriod::Month => {
                let (y, m, _) = civil_from_days(day);
                let start = days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some((start * DAY, days_from_civil(ny, nm, 1) * DAY))
            }
        }
    }
}

impl std::str::FromStr for BudgetPeriod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "run" => Ok(BudgetPeriod::Run),
            "day" => Ok(BudgetPeriod::Day),
            "week" => Ok(BudgetPeriod::Week),
            "month" => Ok(BudgetPeriod::Month),
            other => Err(format!(
                "{other:?} is not a budget period: run, day, week or month"
            )),
        }
    }
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a (year, month, day).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(y: i64, m: i64, d: i64, h: i64) -> i64 {
        (days_from_civil(y, m, d) * 24 + h) * 3_600_000
    }

    #[test]
    fn calendar_windows_hold_the_instant_and_start_where_the_calendar_says() {
        // 2026-12-07 is a Monday; 2024 is a leap year.
        let cases = [
            (
                BudgetPeriod::Day,
                at(2026, 12, 7, 13),
                at(2026, 12, 7, 0),
                at(2026, 12, 8, 0),
            ),
            (
                BudgetPeriod::Week,
                at(2026, 12, 7, 0),
                at(2026, 12, 7, 0),
                at(2026, 12, 14, 0),
            ),
            (
                BudgetPeriod::Week,
                at(2026, 12, 13, 23),
                at(2026, 12, 7, 0),
                at(2026, 12, 14, 0),
            ),
            (
                BudgetPeriod::Month,
                at(2026, 12, 31, 23),
                at(2026, 12, 1, 0),
                at(2027, 1, 1, 0),
            ),
            (
                BudgetPeriod::Month,
                at(2024, 2, 29, 12),
                at(2024, 2, 1, 0),
                at(2024, 3, 1, 0),
            ),
        ];
        for (period, now, start, end) in cases {
            assert_eq!(
                period.window(now),
                Some((start, end)),
                "{period:?} at {now}"
            );
        }
        assert_eq!(BudgetPeriod::Run.window(at(2026, 1, 1, 0)), None);
        // 1970-01-01 was a Thursday: its week began on Monday 1969-12-29.
        assert_eq!(days_from_civil(1969, 12, 29), -3);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2000, 3, 1)), (2000, 3, 1));
    }
}
