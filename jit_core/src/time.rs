//! Time: absolute Unix seconds and human durations.
//!
//! Every decision takes `now` as a parameter so that it can be tested at the boundary second;
//! [`now`] (and [`now_coarse`] for listings) are the only places in the core that read the
//! wall clock.

/// Seconds since the Unix epoch (UTC). Grants carry absolute times, so expiry survives restarts.
pub type UnixTime = i64;

/// Largest time a grant may name: far beyond any real grant, small enough that adding a day or
/// a duration never overflows.
pub const MAX_TIME: UnixTime = 1 << 40;

/// The wall clock, in whole seconds. Falls back to 0 (before every grant: nothing is live) if the
/// clock cannot be read, which fails closed.
pub fn now() -> UnixTime {
    seconds_of(libc::CLOCK_REALTIME)
}

/// The wall clock as the kernel last cached it (`CLOCK_REALTIME_COARSE`: at most one timer
/// tick, a few ms, behind [`now`]), for a decision made tens of thousands of times in a row
/// where a full clock read per decision was a measurable part of the work: listing accounts
/// and groups. Never for a login or sudo decision. Falls back to 0 like [`now`].
pub fn now_coarse() -> UnixTime {
    seconds_of(libc::CLOCK_REALTIME_COARSE)
}

/// Whole seconds of `clock`, 0 if it cannot be read.
fn seconds_of(clock: libc::clockid_t) -> UnixTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc == 0 {
        ts.tv_sec
    } else {
        0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing to parse.
    Empty,
    /// Not of the form `90s`, `30m`, `2h`, `1h30m`, `1d`.
    Malformed(String),
    /// Zero seconds is not a duration a grant can have.
    Zero,
    /// More than `MAX_TIME` seconds.
    TooLong,
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::Empty => write!(f, "empty duration"),
            DurationError::Malformed(s) => write!(
                f,
                "invalid duration {s:?}: use a number with a unit, e.g. 90s, 30m, 2h, 1h30m, 1d"
            ),
            DurationError::Zero => write!(f, "duration must be longer than 0s"),
            DurationError::TooLong => write!(f, "duration is too long"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `90s`, `30m`, `2h`, `1h30m`, `1d12h` into seconds. Units may not repeat or go upwards
/// (`30m1h` is refused) so a typo is not silently summed.
pub fn parse_duration(s: &str) -> Result<i64, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.len() > 32 {
        return Err(DurationError::Malformed(s.chars().take(32).collect()));
    }
    let bad = || DurationError::Malformed(s.to_string());
    let mut total: i64 = 0;
    let mut num: Option<i64> = None;
    let mut last_rank = u8::MAX;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num.unwrap_or(0);
            let n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(i64::from(d)))
                .ok_or(DurationError::TooLong)?;
            num = Some(n);
            continue;
        }
        let (mult, rank) = match c {
            'd' => (86_400, 3),
            'h' => (3_600, 2),
            'm' => (60, 1),
            's' => (1, 0),
            _ => return Err(bad()),
        };
        if rank >= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        let n = num.take().ok_or_else(bad)?;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationError::TooLong)?;
    }
    if num.is_some() {
        // A trailing bare number ("90") is ambiguous: refuse rather than guess the unit.
        return Err(bad());
    }
    if total == 0 {
        return Err(DurationError::Zero);
    }
    if total > MAX_TIME {
        return Err(DurationError::TooLong);
    }
    Ok(total)
}

/// Formats seconds the way [`parse_duration`] reads them (`1h30m`, `45s`, `0s`).
pub fn format_duration(secs: i64) -> String {
    if secs <= 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, mult) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = rest / mult;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            rest -= n * mult;
        }
    }
    out
}

/// Formats a Unix time as UTC ISO 8601 (`2026-11-23T08:54:43Z`) without a time-zone database.
pub fn format_utc(t: UnixTime) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1d12h"), Ok(129_600));
        assert_eq!(parse_duration(" 5m "), Ok(300));
        for bad in [
            "", "90", "h", "1x", "30m1h", "1h1h", "-5m", "1.5h", "m5", "5 m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            parse_duration("9999999999999d"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn duration_round_trip() {
        for s in [1, 59, 60, 61, 3599, 3600, 5400, 86_400, 90_061] {
            assert_eq!(parse_duration(&format_duration(s)), Ok(s));
        }
    }

    #[test]
    fn utc_format() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(2_147_483_647), "2038-01-19T03:14:07Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn clock_is_sane() {
        assert!(now() > 1_700_000_000);
    }
}
