//! `datetime.fromisoformat` of CPython 3.11 (the C implementation), which the
//! reference replay guard and event ingestor use to read timestamps. The
//! grammar is looser than RFC 3339 (any one-byte separator, basic format,
//! ISO week dates, `,` fractions, truncated digits) and peers depend on it.

/// A parsed timestamp: microseconds since the Unix epoch, in UTC when the
/// text carried an offset, else the naive wall-clock reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoTime {
    pub micros: i64,
    pub aware: bool,
}

/// Parses like Python 3.11 `datetime.fromisoformat(text)`.
pub fn parse_python_isoformat(text: &str) -> Option<IsoTime> {
    if text.chars().count() < 7 {
        return None;
    }
    // CPython swaps a non-ASCII separator (char 7, 8 or 10) for 'T' before
    // it works on the UTF-8 bytes.
    let sanitized: String;
    let text = match [7, 8, 10]
        .into_iter()
        .find(|&i| text.chars().nth(i).is_some_and(|c| !c.is_ascii()))
    {
        Some(i) => {
            sanitized = text
                .chars()
                .enumerate()
                .map(|(j, c)| if j == i { 'T' } else { c })
                .collect();
            sanitized.as_str()
        }
        None => text,
    };
    let s = text.as_bytes();
    let sep = find_separator(s)?;
    let (year, month, day) = parse_date(s, sep)?;
    let mut time = TimeParts::default();
    let mut offset: Option<i64> = None;
    if s.len() > sep {
        let (t, tz) = parse_time(&s[sep + 1..])?;
        time = t;
        offset = tz;
    }
    if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if time.hour > 23 || time.minute > 59 || time.second > 59 || time.micro > 999_999 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let local = ((days * 86_400 + time.hour * 3600 + time.minute * 60 + time.second) * 1_000_000)
        + time.micro;
    match offset {
        None => Some(IsoTime {
            micros: local,
            aware: false,
        }),
        Some(off) => {
            // `timezone()` needs |offset| strictly below one day.
            if off.abs() >= 86_400 * 1_000_000 {
                return None;
            }
            Some(IsoTime {
                micros: local - off,
                aware: true,
            })
        }
    }
}

#[derive(Default, Clone, Copy)]
struct TimeParts {
    hour: i64,
    minute: i64,
    second: i64,
    micro: i64,
}

/// Reads byte `i` as C does, with a NUL terminator past the end.
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn digits(s: &[u8], pos: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for i in 0..n {
        let b = at(s, pos + i);
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Some(v)
}

fn find_separator(s: &[u8]) -> Option<usize> {
    let len = s.len();
    if len == 7 {
        return Some(7);
    }
    if at(s, 4) == b'-' {
        if at(s, 5) == b'W' {
            if len < 8 {
                return None;
            }
            if len > 8 && at(s, 8) == b'-' {
                if len == 9 {
                    return None;
                }
                if len > 10 && at(s, 10).is_ascii_digit() {
                    return Some(8);
                }
                return Some(10);
            }
            return Some(8);
        }
        return Some(10);
    }
    if at(s, 4) == b'W' {
        let mut idx = 7;
        while idx < len && at(s, idx).is_ascii_digit() {
            idx += 1;
        }
        if idx < 9 {
            return Some(idx);
        }
        return Some(if idx % 2 == 0 { 7 } else { 8 });
    }
    Some(8)
}

fn parse_date(s: &[u8], len: usize) -> Option<(i64, i64, i64)> {
    let year = digits(s, 0, 4)?;
    let mut p = 4;
    let uses_sep = at(s, p) == b'-';
    if uses_sep {
        p += 1;
    }
    if at(s, p) == b'W' {
        p += 1;
        let week = digits(s, p, 2)?;
        p += 2;
        let mut day = 1;
        if p < len {
            if uses_sep {
                if at(s, p) != b'-' {
                    return None;
                }
                p += 1;
            }
            day = digits(s, p, 1)?;
        }
        return iso_week_to_ymd(year, week, day);
    }
    let month = digits(s, p, 2)?;
    p += 2;
    if uses_sep {
        if at(s, p) != b'-' {
            return None;
        }
        p += 1;
    }
    let day = digits(s, p, 2)?;
    Some((year, month, day))
}

/// `parse_hh_mm_ss_ff`: returns the parts and whether text is left over
/// (C's return code 1), reading `s` up to `end` with C's NUL look-ahead.
fn parse_hh_mm_ss_ff(s: &[u8], start: usize, end: usize) -> Option<(TimeParts, bool)> {
    let mut vals = [0i64; 3];
    let mut p = start;
    let mut has_sep = true;
    for (i, val) in vals.iter_mut().enumerate() {
        *val = digits(s, p, 2)?;
        p += 2;
        let c = at(s, p);
        p += 1;
        if i == 0 {
            has_sep = c == b':';
        }
        if p >= end {
            let parts = TimeParts {
                hour: vals[0],
                minute: vals[1],
                second: vals[2],
                micro: 0,
            };
            return Some((parts, c != 0));
        } else if has_sep && c == b':' {
            continue;
        } else if c == b'.' || c == b',' {
            break;
        } else if !has_sep {
            p -= 1;
        } else {
            return None;
        }
    }
    let remaining = end.saturating_sub(p);
    let to_parse = remaining.min(6);
    let mut micro = digits(s, p, to_parse)?;
    p += to_parse;
    if to_parse < 6 {
        const CORRECTION: [i64; 6] = [1_000_000, 100_000, 10_000, 1_000, 100, 10];
        micro *= CORRECTION[to_parse];
    }
    while at(s, p).is_ascii_digit() {
        p += 1;
    }
    let parts = TimeParts {
        hour: vals[0],
        minute: vals[1],
        second: vals[2],
        micro,
    };
    Some((parts, at(s, p) != 0))
}

/// Time part after the separator: parts plus the UTC offset in µs, if any.
fn parse_time(s: &[u8]) -> Option<(TimeParts, Option<i64>)> {
    let end = s.len();
    let mut tz = 0;
    loop {
        if matches!(at(s, tz), b'Z' | b'+' | b'-') {
            break;
        }
        tz += 1;
        if tz >= end {
            break;
        }
    }
    let (time, trailing) = parse_hh_mm_ss_ff(s, 0, tz)?;
    if tz >= end {
        return if trailing { None } else { Some((time, None)) };
    }
    if s[tz] == b'Z' {
        return if at(s, tz + 1) != 0 {
            None
        } else {
            Some((time, Some(0)))
        };
    }
    let sign = if s[tz] == b'-' { -1 } else { 1 };
    let (off, trailing) = parse_hh_mm_ss_ff(s, tz + 1, end)?;
    if trailing {
        return None;
    }
    let micros = ((off.hour * 3600 + off.minute * 60 + off.second) * 1_000_000) + off.micro;
    Some((time, Some(sign * micros)))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day) of a day number.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn iso_week_to_ymd(year: i64, week: i64, day: i64) -> Option<(i64, i64, i64)> {
    if !(1..=9999).contains(&year) {
        return None;
    }
    // Weekday of Jan 4th (Monday = 0): its week is ISO week 1.
    let jan4 = days_from_civil(year, 1, 4);
    let jan4_weekday = (jan4 + 3).rem_euclid(7);
    if !(1..=53).contains(&week) {
        return None;
    }
    if week == 53 {
        let jan1_weekday = (days_from_civil(year, 1, 1) + 3).rem_euclid(7);
        // 53 weeks only in years starting on Thursday, or leap years on Wednesday.
        if !(jan1_weekday == 3 || (jan1_weekday == 2 && is_leap(year))) {
            return None;
        }
    }
    if !(1..=7).contains(&day) {
        return None;
    }
    let week1_monday = jan4 - jan4_weekday;
    let days = week1_monday + (week - 1) * 7 + (day - 1);
    let (y, m, d) = civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    Some((y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Option<(i64, bool)> {
        parse_python_isoformat(s).map(|t| (t.micros, t.aware))
    }

    #[test]
    fn common_forms() {
        let base = 1_777_636_800_000_000; // 2026-05-01T12:00:00Z
        assert_eq!(utc("2026-05-01T12:00:00+00:00"), Some((base, true)));
        assert_eq!(
            utc("2026-05-01 12:00:00.5+00:00"),
            Some((base + 500_000, true))
        );
        assert_eq!(utc("2026-05-01T14:00:00+02:00"), Some((base, true)));
        assert_eq!(utc("20260501T120000+0000"), Some((base, true)));
        assert_eq!(utc("2026-05-01T12:00:00"), Some((base, false)));
        assert_eq!(
            utc("2026-05-01T12:00:00,25+00:00"),
            Some((base + 250_000, true))
        );
        assert_eq!(
            utc("2026-05-01T12:00:00.123456789+00:00"),
            Some((base + 123_456, true))
        );
        assert_eq!(utc("2026-05-01"), Some((base - 12 * 3_600_000_000, false)));
    }

    #[test]
    fn rejects() {
        for bad in [
            "2026-05-01T12:00:00z",
            "garbage-ts",
            "2026-13-01",
            "2026-02-30",
            "2026-05-01T24:00:00",
            "2026-05-01T12:00:00+24:00",
            "2026-05-01T12:00:00+",
            "2026-05-01T12:00:00.",
            "",
            "2026-5-1",
        ] {
            assert_eq!(utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for d in [-719_162, -1, 0, 1, 20_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
