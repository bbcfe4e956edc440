//! Time-window conditions: `--window "Mon-Fri 09:00-18:00"` in host local time.
//!
//! A window is a set of weekdays and a span of wall-clock minutes. Spans that end before they
//! start (`22:00-06:00`) cross midnight and belong to the day they *start* on: `Fri 22:00-06:00`
//! covers Friday 22:00 to Saturday 06:00, which is what an on-call rota means by "Friday night".
//! Start is inclusive, end exclusive, like grant liveness.
//!
//! The caller supplies the local time (from `localtime_r`, see [`local_time_from_tm`]); nothing
//! here reads a clock or a time-zone database. Judging by wall-clock minutes means a DST change
//! simply shortens or lengthens that night's window, as a person reading the rule expects.

use super::PolicyError;

const WHAT: &str = "time window";
const MAX_WINDOW_LEN: usize = 128;
const MINUTES_PER_DAY: u16 = 1440;
const ALL_DAYS: u8 = 0x7f;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const SYNTAX: &str =
    "expected DAYS HH:MM-HH:MM, e.g. \"Mon-Fri 09:00-18:00\", \"Sat 10:00-12:00\", \
                      \"Mon,Wed,Fri 08:00-20:00\" or \"* 22:00-06:00\"";

/// A moment in host local time, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = Monday ... 6 = Sunday. Anything larger is in no window.
    pub weekday: u8,
    /// Minutes since local midnight, 0..1440. Anything larger is in no window.
    pub minute: u16,
}

impl LocalTime {
    /// `weekday` (0 = Monday), `hour`:`minute`; out-of-range parts give a time in no window.
    pub fn new(weekday: u8, hour: u8, minute: u8) -> LocalTime {
        let m = if hour < 24 && minute < 60 {
            u16::from(hour) * 60 + u16::from(minute)
        } else {
            MINUTES_PER_DAY
        };
        LocalTime { weekday, minute: m }
    }

    fn is_valid(self) -> bool {
        self.weekday < 7 && self.minute < MINUTES_PER_DAY
    }
}

/// Converts a `struct tm` from `localtime_r`. Its `tm_wday` counts from Sunday = 0, ours from
/// Monday = 0. A `tm` with fields out of range (never from libc, but this is a public function)
/// gives a time that no window contains, so a bad input fails closed.
pub fn local_time_from_tm(tm: &libc::tm) -> LocalTime {
    let weekday = match tm.tm_wday {
        0 => 6,
        d @ 1..=6 => (d - 1) as u8,
        _ => 7,
    };
    let minute = if (0..24).contains(&tm.tm_hour) && (0..60).contains(&tm.tm_min) {
        (tm.tm_hour * 60 + tm.tm_min) as u16
    } else {
        MINUTES_PER_DAY
    };
    LocalTime { weekday, minute }
}

/// A parsed time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Bit `d` set: the window starts on weekday `d` (0 = Monday).
    days: u8,
    /// First minute inside, 0..1440.
    start: u16,
    /// First minute after, 1..=1440; below `start` when the window crosses midnight.
    end: u16,
}

impl Window {
    /// True when `t` lies in the window (start inclusive, end exclusive).
    pub fn contains(&self, t: LocalTime) -> bool {
        if !t.is_valid() {
            return false;
        }
        let today = self.starts_on(t.weekday);
        if self.start < self.end {
            return today && self.start <= t.minute && t.minute < self.end;
        }
        // Crosses midnight: the evening part belongs to today, the morning part to yesterday.
        let yesterday = self.starts_on((t.weekday + 6) % 7);
        (today && t.minute >= self.start) || (yesterday && t.minute < self.end)
    }

    fn starts_on(&self, weekday: u8) -> bool {
        weekday < 7 && self.days & (1 << weekday) != 0
    }
}

fn fmt_minute(f: &mut std::fmt::Formatter<'_>, m: u16) -> std::fmt::Result {
    write!(f, "{:02}:{:02}", m / 60, m % 60)
}

/// The canonical form, which [`parse_window`] reads back: `*` for every day, otherwise days in
/// week order with runs shown as ranges (`Mon-Fri`, `Mon,Wed,Fri`).
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.days == ALL_DAYS {
            f.write_str("*")?;
        } else {
            let mut first = true;
            let mut d = 0u8;
            while d < 7 {
                if !self.starts_on(d) {
                    d += 1;
                    continue;
                }
                let mut last = d;
                while last + 1 < 7 && self.starts_on(last + 1) {
                    last += 1;
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                let name = |i: u8| DAY_NAMES.get(usize::from(i)).copied().unwrap_or("?");
                f.write_str(name(d))?;
                if last > d {
                    write!(f, "-{}", name(last))?;
                }
                d = last + 1;
            }
        }
        f.write_str(" ")?;
        fmt_minute(f, self.start)?;
        f.write_str("-")?;
        fmt_minute(f, self.end)
    }
}

/// Parses `DAYS HH:MM-HH:MM`.
///
/// DAYS is `*`, a day (`Mon` ... `Sun`, any case), a range (`Mon-Fri`; `Fri-Mon` wraps over the
/// weekend), or a comma list of those (`Mon,Wed,Fri-Sat`). Times are `H:MM` or `HH:MM`, 00:00 to
/// 23:59, and `24:00` as an end. Refused: an empty span (`09:00-09:00` could mean nothing or
/// everything; write `00:00-24:00` for a whole day), a start of 24:00, anything else after the
/// span.
pub fn parse_window(s: &str) -> Result<Window, PolicyError> {
    if s.trim().is_empty() {
        return Err(PolicyError::Empty(WHAT));
    }
    if s.len() > MAX_WINDOW_LEN {
        return Err(PolicyError::TooLong(WHAT, MAX_WINDOW_LEN));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            "contains a control character",
        ));
    }
    let mut parts = s.split_ascii_whitespace();
    let (Some(days_s), Some(span_s), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(PolicyError::invalid(WHAT, s, SYNTAX));
    };
    let days = parse_days(days_s).map_err(|why| PolicyError::invalid(WHAT, s, why))?;
    let (start_s, end_s) = span_s
        .split_once('-')
        .ok_or_else(|| PolicyError::invalid(WHAT, s, SYNTAX))?;
    let start = parse_hhmm(start_s).ok_or_else(|| {
        PolicyError::invalid(WHAT, s, "the start is not a time from 00:00 to 23:59")
    })?;
    let end = parse_hhmm(end_s).ok_or_else(|| {
        PolicyError::invalid(WHAT, s, "the end is not a time from 00:00 to 24:00")
    })?;
    if start >= MINUTES_PER_DAY {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            "a window cannot start at 24:00 (use 00:00)",
        ));
    }
    if start == end {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            "the window is empty (for a whole day write 00:00-24:00)",
        ));
    }
    Ok(Window { days, start, end })
}

fn parse_day(s: &str) -> Option<u8> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .and_then(|i| u8::try_from(i).ok())
}

fn parse_days(s: &str) -> Result<u8, &'static str> {
    const BAD_DAY: &str = "days are *, Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range such as \
                           Mon-Fri, or a comma list such as Mon,Wed,Fri";
    if s == "*" {
        return Ok(ALL_DAYS);
    }
    let mut days = 0u8;
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a).ok_or(BAD_DAY)?, parse_day(b).ok_or(BAD_DAY)?);
                // Walk forward from a to b, wrapping after Sunday: Fri-Mon is Fri,Sat,Sun,Mon.
                let mut d = a;
                loop {
                    days |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << parse_day(item).ok_or(BAD_DAY)?,
        }
    }
    Ok(days)
}

/// `H:MM` or `HH:MM` to minutes; 24:00 is 1440 (an end only, checked by the caller).
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let digits = |x: &str, lo: usize, hi: usize| {
        (lo..=hi).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1, 2) || !digits(m, 2, 2) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// The `--window` condition: an empty list does not restrict; otherwise `t` must lie in one of
/// the windows.
pub fn window_allows(windows: &[Window], t: LocalTime) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MON: u8 = 0;
    const TUE: u8 = 1;
    const WED: u8 = 2;
    const THU: u8 = 3;
    const FRI: u8 = 4;
    const SAT: u8 = 5;
    const SUN: u8 = 6;

    fn t(weekday: u8, hour: u8, minute: u8) -> LocalTime {
        LocalTime::new(weekday, hour, minute)
    }

    #[test]
    fn contains_table() {
        let cases: &[(&str, LocalTime, bool)] = &[
            ("Mon-Fri 09:00-18:00", t(MON, 9, 0), true),
            ("Mon-Fri 09:00-18:00", t(MON, 8, 59), false),
            ("Mon-Fri 09:00-18:00", t(FRI, 17, 59), true),
            ("Mon-Fri 09:00-18:00", t(FRI, 18, 0), false),
            ("Mon-Fri 09:00-18:00", t(WED, 12, 0), true),
            ("Mon-Fri 09:00-18:00", t(SAT, 12, 0), false),
            ("Mon-Fri 09:00-18:00", t(SUN, 12, 0), false),
            ("Sat 10:00-12:00", t(SAT, 10, 0), true),
            ("Sat 10:00-12:00", t(SAT, 11, 59), true),
            ("Sat 10:00-12:00", t(SAT, 12, 0), false),
            ("Sat 10:00-12:00", t(SUN, 11, 0), false),
            ("Mon,Wed,Fri 08:00-20:00", t(MON, 8, 0), true),
            ("Mon,Wed,Fri 08:00-20:00", t(TUE, 10, 0), false),
            ("Mon,Wed,Fri 08:00-20:00", t(WED, 19, 59), true),
            ("Mon,Wed,Fri 08:00-20:00", t(THU, 10, 0), false),
            ("Mon,Wed,Fri 08:00-20:00", t(FRI, 20, 0), false),
            // Crossing midnight: belongs to the day it starts.
            ("* 22:00-06:00", t(MON, 22, 0), true),
            ("* 22:00-06:00", t(MON, 23, 59), true),
            ("* 22:00-06:00", t(TUE, 0, 0), true),
            ("* 22:00-06:00", t(TUE, 5, 59), true),
            ("* 22:00-06:00", t(TUE, 6, 0), false),
            ("* 22:00-06:00", t(TUE, 21, 59), false),
            ("* 22:00-06:00", t(SUN, 23, 0), true),
            ("* 22:00-06:00", t(MON, 3, 0), true), // Sunday night, wrapping the week
            ("Fri 22:00-06:00", t(FRI, 22, 30), true),
            ("Fri 22:00-06:00", t(SAT, 5, 0), true),
            ("Fri 22:00-06:00", t(SAT, 6, 0), false),
            ("Fri 22:00-06:00", t(SAT, 22, 30), false),
            ("Fri 22:00-06:00", t(FRI, 5, 0), false), // Thursday night is not Friday's
            ("Sun 23:00-01:00", t(MON, 0, 30), true),
            ("Sun 23:00-01:00", t(SUN, 0, 30), false),
            ("Mon-Sun 00:00-24:00", t(MON, 0, 0), true),
            ("Mon-Sun 00:00-24:00", t(SUN, 23, 59), true),
            ("Mon-Sun 00:00-24:00", t(THU, 12, 0), true),
            ("Mon 00:00-24:00", t(MON, 23, 59), true),
            ("Mon 00:00-24:00", t(TUE, 0, 0), false),
            ("Mon 23:59-24:00", t(MON, 23, 59), true),
            ("Mon 23:59-24:00", t(MON, 23, 58), false),
            ("Mon 00:00-00:01", t(MON, 0, 0), true),
            ("Mon 00:00-00:01", t(MON, 0, 1), false),
            // Wrapping day ranges.
            ("Fri-Mon 10:00-11:00", t(FRI, 10, 0), true),
            ("Fri-Mon 10:00-11:00", t(SAT, 10, 0), true),
            ("Fri-Mon 10:00-11:00", t(SUN, 10, 0), true),
            ("Fri-Mon 10:00-11:00", t(MON, 10, 0), true),
            ("Fri-Mon 10:00-11:00", t(TUE, 10, 0), false),
            ("Fri-Mon 10:00-11:00", t(THU, 10, 0), false),
            ("Sun-Sun 10:00-11:00", t(SUN, 10, 0), true),
            ("Sun-Sun 10:00-11:00", t(MON, 10, 0), false),
            ("Sat-Sun 23:00-02:00", t(MON, 1, 0), true),
            ("Sat-Sun 23:00-02:00", t(SAT, 1, 0), false),
            ("mon-FRI 9:00-17:30", t(TUE, 17, 29), true),
            ("mon-FRI 9:00-17:30", t(TUE, 17, 30), false),
            ("Mon,Mon,Mon 09:00-10:00", t(MON, 9, 30), true),
            ("Mon-Wed,Fri 09:00-10:00", t(TUE, 9, 30), true),
            ("Mon-Wed,Fri 09:00-10:00", t(THU, 9, 30), false),
            ("  Mon-Fri   09:00-18:00 ", t(MON, 9, 0), true),
            // Out-of-range times are in no window, even an all-week one.
            (
                "* 00:00-24:00",
                LocalTime {
                    weekday: 7,
                    minute: 0,
                },
                false,
            ),
            (
                "* 00:00-24:00",
                LocalTime {
                    weekday: 0,
                    minute: 1440,
                },
                false,
            ),
            (
                "* 22:00-06:00",
                LocalTime {
                    weekday: 255,
                    minute: 100,
                },
                false,
            ),
            (
                "* 22:00-06:00",
                LocalTime {
                    weekday: 1,
                    minute: u16::MAX,
                },
                false,
            ),
        ];
        for (spec, at, want) in cases {
            let w = parse_window(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(w.contains(*at), *want, "{spec} at {at:?}");
        }
    }

    #[test]
    fn every_minute_of_a_week() {
        // Exhaustive for a crossing window: exactly 7 * 8 hours inside.
        let minutes_inside = |spec: &str| {
            let w = parse_window(spec).unwrap();
            (0..7u8)
                .flat_map(|d| {
                    (0..1440u16).map(move |m| LocalTime {
                        weekday: d,
                        minute: m,
                    })
                })
                .filter(|&lt| w.contains(lt))
                .count()
        };
        assert_eq!(minutes_inside("* 22:00-06:00"), 7 * 8 * 60);
        assert_eq!(minutes_inside("Fri 22:00-06:00"), 8 * 60);
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "   ",
            "Mon-Fri",
            "09:00-18:00",
            "Mon-Fri 09:00",
            "Mon-Fri 09:00-18:00 extra",
            "Mon-Fri 09:00 - 18:00",
            "Mon - Fri 09:00-18:00",
            "Monday 09:00-18:00",
            "Mo 09:00-18:00",
            "Mon-Fry 09:00-18:00",
            "Mon- 09:00-18:00",
            "-Fri 09:00-18:00",
            "Mon-Tue-Wed 09:00-18:00",
            "Mon,,Fri 09:00-18:00",
            "Mon, 09:00-18:00",
            ",Mon 09:00-18:00",
            "** 09:00-18:00",
            "*,Mon 09:00-18:00",
            "Mon 9-18",
            "Mon 09:0-18:00",
            "Mon 09:000-18:00",
            "Mon 009:00-18:00",
            "Mon 09:60-18:00",
            "Mon 25:00-26:00",
            "Mon 24:00-06:00",
            "Mon 24:01-06:00",
            "Mon 09:00-24:01",
            "Mon 09:00-09:00",
            "Mon 00:00-00:00",
            "Mon 24:00-24:00",
            "Mon +9:00-18:00",
            "Mon 09:00-18:00-19:00",
            "Mon 09:00--18:00",
            "Mon 09.00-18.00",
            "Mon\t09:00-18:00\n",
            "Mon 09:00-18:00\u{0}",
            "Ｍon 09:00-18:00",
            "Mon 0９:00-18:00",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse_window(&"Mon,".repeat(100)),
            Err(PolicyError::TooLong(..))
        ));
        let msg = parse_window("Mon 25:00-26:00").unwrap_err().to_string();
        assert!(msg.contains("\"Mon 25:00-26:00\""), "{msg}");
    }

    #[test]
    fn canonical_form() {
        for (input, shown) in [
            ("Mon-Fri 09:00-18:00", "Mon-Fri 09:00-18:00"),
            ("mon-fri 9:00-18:00", "Mon-Fri 09:00-18:00"),
            ("Mon-Sun 00:00-24:00", "* 00:00-24:00"),
            ("Fri-Mon 22:00-06:00", "Mon,Fri-Sun 22:00-06:00"),
            ("Mon,Wed,Fri 08:00-20:00", "Mon,Wed,Fri 08:00-20:00"),
            ("Sun,Sat 10:00-12:00", "Sat-Sun 10:00-12:00"),
        ] {
            let w = parse_window(input).unwrap();
            assert_eq!(w.to_string(), shown);
            assert_eq!(parse_window(shown).unwrap(), w);
        }
    }

    #[test]
    fn any_of_several_windows() {
        let ws = [
            parse_window("Mon-Fri 09:00-18:00").unwrap(),
            parse_window("Sat 10:00-12:00").unwrap(),
        ];
        assert!(
            window_allows(&[], t(SUN, 3, 0)),
            "no --window: unrestricted"
        );
        assert!(window_allows(&ws, t(SAT, 11, 0)));
        assert!(window_allows(&ws, t(TUE, 9, 0)));
        assert!(!window_allows(&ws, t(SUN, 11, 0)));
        assert!(!window_allows(
            &ws,
            LocalTime {
                weekday: 9,
                minute: 0
            }
        ));
    }

    fn gmtime(t: libc::time_t) -> libc::tm {
        // SAFETY: an all-zero `tm` is a valid value (integers and a null `tm_zone` pointer).
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; gmtime_r writes only into `tm`.
        let r = unsafe { libc::gmtime_r(&t, &mut tm) };
        assert!(!r.is_null());
        tm
    }

    #[test]
    fn from_libc_tm() {
        // 2024-01-01 00:00 UTC was a Monday; 2024-01-07 23:59 a Sunday; 1970-01-01 a Thursday.
        assert_eq!(
            local_time_from_tm(&gmtime(1_704_067_200)),
            LocalTime {
                weekday: MON,
                minute: 0
            }
        );
        assert_eq!(
            local_time_from_tm(&gmtime(1_704_671_940)),
            LocalTime {
                weekday: SUN,
                minute: 1439
            }
        );
        assert_eq!(
            local_time_from_tm(&gmtime(0)),
            LocalTime {
                weekday: THU,
                minute: 0
            }
        );
        // Each day of that week in turn.
        for d in 0..7u8 {
            let tm = gmtime(1_704_067_200 + i64::from(d) * 86_400 + 9 * 3600 + 30 * 60);
            assert_eq!(local_time_from_tm(&tm), t(d, 9, 30));
        }
        // Out-of-range fields fail closed.
        for (wday, hour, min) in [(7, 0, 0), (-1, 0, 0), (1, 24, 0), (1, -1, 0), (1, 0, 60)] {
            let mut tm = gmtime(0);
            tm.tm_wday = wday;
            tm.tm_hour = hour;
            tm.tm_min = min;
            let lt = local_time_from_tm(&tm);
            assert!(
                !parse_window("* 00:00-24:00").unwrap().contains(lt),
                "{lt:?}"
            );
        }
    }
}
