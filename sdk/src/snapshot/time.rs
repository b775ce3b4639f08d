//! UTC timestamps as snapshot refs spell them: `2026-11-30T08:15:00.123456789Z`, fixed width so
//! that the sorted ref list is in time order, and the calendar buckets `forget --keep-daily`
//! and friends group snapshots by.

use std::fmt;

/// Nanoseconds since the Unix epoch (UTC), after 1970.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// The calendar fields of a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Nanoseconds.
    pub nanos: u32,
}

const NS: u64 = 1_000_000_000;
const DAY: u64 = 86_400;

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01. Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Timestamp {
    /// From nanoseconds since the epoch.
    pub const fn from_unix_nanos(ns: u64) -> Self {
        Self(ns)
    }

    /// Now, from the system clock.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(d.as_nanos() as u64)
    }

    /// Nanoseconds since the epoch.
    pub const fn unix_nanos(self) -> u64 {
        self.0
    }

    /// The calendar fields (UTC).
    pub fn civil(self) -> Civil {
        let secs = self.0 / NS;
        let (year, month, day) = civil_from_days((secs / DAY) as i64);
        let s = secs % DAY;
        Civil {
            year,
            month,
            day,
            hour: (s / 3600) as u32,
            minute: (s / 60 % 60) as u32,
            second: (s % 60) as u32,
            nanos: (self.0 % NS) as u32,
        }
    }

    /// Parses the form [`Display`](fmt::Display) writes; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 30 || &b[4..5] != b"-" || &b[7..8] != b"-" || &b[10..11] != b"T" || b[29] != b'Z' {
            return None;
        }
        if &b[13..14] != b":" || &b[16..17] != b":" || &b[19..20] != b"." {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u64> {
            let t = s.get(r)?;
            t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
        let (h, mi, se, ns) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..29)?);
        if !(1970..=2500).contains(&y)
            || !(1..=12).contains(&mo)
            || !(1..=31).contains(&d)
            || h > 23
            || mi > 59
            || se > 59
        {
            return None;
        }
        let days = days_from_civil(y as i64, mo, d);
        if civil_from_days(days) != (y as i64, mo, d) {
            return None; // 31 February and friends
        }
        let secs = days as u64 * DAY + h * 3600 + mi * 60 + se;
        Some(Self(secs.checked_mul(NS)?.checked_add(ns)?))
    }

    /// Bucket keys for retention policies: the same key means the same hour/day/week/month/year.
    /// Weeks start on Monday.
    pub fn bucket(self, unit: Bucket) -> i64 {
        let c = self.civil();
        let days = (self.0 / NS / DAY) as i64;
        match unit {
            Bucket::Hour => (self.0 / NS / 3600) as i64,
            Bucket::Day => days,
            // 1970-01-01 was a Thursday: shift by 3 so that weeks run Monday to Sunday.
            Bucket::Week => (days + 3).div_euclid(7),
            Bucket::Month => c.year * 12 + i64::from(c.month),
            Bucket::Year => c.year,
        }
    }
}

/// A calendar unit of a retention policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// Clock hour.
    Hour,
    /// Calendar day.
    Day,
    /// Monday-to-Sunday week.
    Week,
    /// Calendar month.
    Month,
    /// Calendar year.
    Year,
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.civil();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.nanos
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let t = Timestamp::from_unix_nanos(0);
        assert_eq!(t.to_string(), "1970-01-01T00:00:00.000000000Z");
        let t = Timestamp::from_unix_nanos(951_825_600 * NS + 5); // 2000-02-29T12:00:00
        assert_eq!(t.to_string(), "2000-02-29T12:00:00.000000005Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        for bad in [
            "",
            "2023-02-30T00:00:00.000000000Z",
            "2023-1-01T00:00:00.000000000Z",
            "x".repeat(30).as_str(),
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lexical_order_is_time_order() {
        let a = Timestamp::from_unix_nanos(9 * NS);
        let b = Timestamp::from_unix_nanos(10 * NS);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn buckets() {
        // 2024-01-01 was a Monday; 2023-12-31 a Sunday.
        let mon = Timestamp::parse("2024-01-01T10:00:00.000000000Z").unwrap();
        let sun = Timestamp::parse("2023-12-31T23:00:00.000000000Z").unwrap();
        let next_sun = Timestamp::parse("2024-01-07T23:59:59.000000000Z").unwrap();
        assert_ne!(mon.bucket(Bucket::Week), sun.bucket(Bucket::Week));
        assert_eq!(mon.bucket(Bucket::Week), next_sun.bucket(Bucket::Week));
        assert_ne!(mon.bucket(Bucket::Year), sun.bucket(Bucket::Year));
        assert_eq!(mon.bucket(Bucket::Month), 2024 * 12 + 1);
        assert_eq!(sun.bucket(Bucket::Day) + 1, mon.bucket(Bucket::Day));
    }
}
