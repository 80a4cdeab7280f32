//! Expression and timezone rules per kind (scheduler spec §3.2): what the
//! real scheduler can evaluate, checked at write time so one bad row never
//! reaches it (a bad row would abort its whole sync).

use crate::store::schedules::Kind;

/// `None` when the expression is valid for `kind`, else why not.
pub fn expression(kind: Kind, expr: &str) -> Result<(), String> {
    match kind {
        Kind::Interval => interval_seconds(expr).map(|_| ()),
        Kind::Cron => cron(expr),
        Kind::Clocked => clocked(expr).map(|_| ()),
        Kind::Solar => solar(expr),
    }
}

/// `^\s*(\d+)\s*([smhd]?)\s*$`, positive; the interval in seconds.
pub fn interval_seconds(expr: &str) -> Result<u64, String> {
    let t = expr.trim();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let unit = t[digits.len()..].trim();
    if digits.is_empty() {
        return Err(format!(
            "interval {expr:?} must be a whole number with an optional unit s, m, h or d (e.g. \"30s\", \"5m\")"
        ));
    }
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("interval unit {other:?} is not one of s, m, h, d")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("interval {expr:?} is too large"))?;
    let secs = n
        .checked_mul(factor)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .ok_or_else(|| format!("interval {expr:?} is too large (at most 100 years)"))?;
    if secs == 0 {
        return Err(format!("interval {expr:?} must be greater than zero"));
    }
    Ok(secs)
}

/// An ISO-8601 instant with an offset (`Z` allowed); naive times are
/// refused because the scheduler cannot place them.
pub fn clocked(expr: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    let t = expr.trim();
    chrono::DateTime::parse_from_rfc3339(t)
        .or_else(|_| chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .or_else(|_| chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M%:z"))
        .map_err(|_| {
            format!("clocked expression {expr:?} must be an ISO-8601 time with an offset, e.g. 2026-01-01T09:00:00+00:00")
        })
}

const SOLAR_EVENTS: &[&str] = &[
    "dawn",
    "sunrise",
    "noon",
    "solar_noon",
    "sunset",
    "dusk",
    "midnight",
    "solar_midnight",
];

/// `event:lat:lon`.
fn solar(expr: &str) -> Result<(), String> {
    let parts: Vec<&str> = expr.trim().split(':').collect();
    let [event, lat, lon] = parts.as_slice() else {
        return Err(format!(
            "solar expression {expr:?} must be event:latitude:longitude"
        ));
    };
    if !SOLAR_EVENTS.contains(event) {
        return Err(format!(
            "solar event {event:?} is not one of {}",
            SOLAR_EVENTS.join(", ")
        ));
    }
    let coord = |v: &str, name: &str, limit: f64| -> Result<(), String> {
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x.abs() <= limit => Ok(()),
            _ => Err(format!(
                "solar {name} {v:?} must be a number in [-{limit}, {limit}]"
            )),
        }
    };
    coord(lat, "latitude", 90.0)?;
    coord(lon, "longitude", 180.0)
}

/// One cron field: its name, range and the names it accepts.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 6] = [
    Field {
        name: "minute",
        lo: 0,
        hi: 59,
        names: &[],
    },
    Field {
        name: "hour",
        lo: 0,
        hi: 23,
        names: &[],
    },
    Field {
        name: "day-of-month",
        lo: 1,
        hi: 31,
        names: &[],
    },
    Field {
        name: "month",
        lo: 1,
        hi: 12,
        names: MONTHS,
    },
    Field {
        name: "day-of-week",
        lo: 0,
        hi: 7,
        names: DAYS,
    },
    Field {
        name: "second",
        lo: 0,
        hi: 59,
        names: &[],
    },
];

const ALIASES: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// The first fire after `anchor` of a cron or interval schedule in its
/// zone (an unknown zone is UTC), as the scheduler computes it: interval =
/// anchor + interval; cron = the next matching instant. `None` for other
/// kinds and expressions that do not parse.
pub fn next_fire_after(
    kind: Kind,
    expr: &str,
    timezone: &str,
    anchor: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    match kind {
        Kind::Interval => {
            let secs = interval_seconds(expr).ok()?;
            anchor.checked_add_signed(chrono::Duration::seconds(i64::try_from(secs).ok()?))
        }
        Kind::Cron => {
            cron(expr).ok()?;
            let t = expr.trim();
            let parts: Vec<&str> = t.split_whitespace().collect();
            // croniter puts seconds last, croner first.
            let pattern = match parts.as_slice() {
                [m, h, dom, mon, dow, sec] => format!("{sec} {m} {h} {dom} {mon} {dow}"),
                _ => t.to_owned(),
            };
            let c = <croner::Cron as std::str::FromStr>::from_str(&pattern).ok()?;
            let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
            c.find_next_occurrence(&anchor.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        }
        _ => None,
    }
}

/// Five fields (minute hour day-of-month month day-of-week), optionally a
/// sixth for seconds appended last, as croniter reads them.
fn cron(expr: &str) -> Result<(), String> {
    let t = expr.trim();
    if ALIASES.contains(&t.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let parts: Vec<&str> = t.split_whitespace().collect();
    if !(5..=6).contains(&parts.len()) {
        return Err(format!(
            "cron expression {expr:?} must have 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds last; it has {}",
            parts.len()
        ));
    }
    for (part, field) in parts.iter().zip(FIELDS.iter()) {
        cron_field(part, field)
            .map_err(|why| format!("cron {} field {part:?}: {why}", field.name))?;
    }
    Ok(())
}

fn cron_field(text: &str, f: &Field) -> Result<(), String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(s) = step {
            match s.parse::<u32>() {
                Ok(n) if n > 0 && n <= f.hi.max(1) * 2 => {}
                _ => return Err(format!("step {s:?} must be a positive number")),
            }
        }
        if range == "*" || (range == "?" && matches!(f.name, "day-of-month" | "day-of-week")) {
            continue;
        }
        if f.name == "day-of-month" && range.eq_ignore_ascii_case("l") {
            continue;
        }
        if f.name == "day-of-week" {
            // `5#3` (third Friday) and `5L` (last Friday).
            if let Some((d, n)) = range.split_once('#') {
                value(d, f)?;
                return match n.parse::<u32>() {
                    Ok(1..=5) => Ok(()),
                    _ => Err(format!("{n:?} after # must be 1 to 5")),
                };
            }
            if let Some(d) = range.strip_suffix(['L', 'l']) {
                value(d, f)?;
                continue;
            }
        }
        match range.split_once('-') {
            Some((a, b)) => {
                value(a, f)?;
                value(b, f)?;
            }
            None => {
                value(range, f)?;
            }
        }
    }
    Ok(())
}

fn value(v: &str, f: &Field) -> Result<u32, String> {
    let lower = v.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + f.lo);
    }
    match v.parse::<u32>() {
        Ok(n) if (f.lo..=f.hi).contains(&n) => Ok(n),
        _ => Err(format!(
            "{v:?} is not a value in {}-{}{}",
            f.lo,
            f.hi,
            if f.names.is_empty() { "" } else { " or a name" }
        )),
    }
}

/// An IANA zone name of the pinned tz database (`localtime` and other
/// host-dependent names are refused).
pub fn timezone(tz: &str) -> Result<(), String> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| format!("timezone {tz:?} is not an IANA zone name (e.g. UTC, Europe/Berlin)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_fires() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let anchor = at("2026-03-28T22:30:10Z");
        let next = |kind, e: &str, tz: &str| next_fire_after(kind, e, tz, anchor);
        assert_eq!(
            next(Kind::Interval, "90s", "UTC"),
            Some(at("2026-03-28T22:31:40Z"))
        );
        assert_eq!(
            next(Kind::Cron, "*/15 * * * *", "UTC"),
            Some(at("2026-03-28T22:45:00Z"))
        );
        // Seconds last, as croniter reads six fields.
        assert_eq!(
            next(Kind::Cron, "* * * * * 30", "UTC"),
            Some(at("2026-03-28T22:30:30Z"))
        );
        // In the schedule's zone, across the spring-forward night.
        assert_eq!(
            next(Kind::Cron, "0 9 * * *", "Europe/Berlin"),
            Some(at("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            next(Kind::Cron, "0 9 * * *", "Nowhere/Bogus"),
            Some(at("2026-03-29T09:00:00Z"))
        );
        assert_eq!(
            next(Kind::Cron, "@hourly", "UTC"),
            Some(at("2026-03-28T23:00:00Z"))
        );
        assert_eq!(
            next(Kind::Cron, "0 0 L * *", "UTC"),
            Some(at("2026-03-31T00:00:00Z"))
        );
        assert_eq!(next(Kind::Cron, "not a cron", "UTC"), None);
        assert_eq!(
            next(Kind::Clocked, "2026-04-01T00:00:00+00:00", "UTC"),
            None
        );
    }

    #[test]
    fn intervals() {
        assert_eq!(interval_seconds("10s"), Ok(10));
        assert_eq!(interval_seconds(" 5 m "), Ok(300));
        assert_eq!(interval_seconds("2"), Ok(2));
        assert_eq!(interval_seconds("1d"), Ok(86_400));
        for bad in ["0s", "", "s", "5w", "-5", "1.5m", "99999999999999999999"] {
            assert!(interval_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crons() {
        for good in [
            "* * * * *",
            "*/5 * * * *",
            "0 9 * * mon-fri",
            "30 3 1,15 * *",
            "0 0 L * *",
            "0 0 * * 5#3",
            "0 12 * jan-mar sun",
            "* * * * * 30",
            "@hourly",
        ] {
            assert_eq!(cron(good), Ok(()), "{good}");
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "a b c d e",
            "* * * * * * *",
        ] {
            assert!(cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clocked_and_solar_and_zones() {
        assert!(clocked("2026-01-01T09:00:00Z").is_ok());
        assert!(clocked("2026-01-01T09:00:00+02:00").is_ok());
        assert!(clocked("2026-01-01T09:00:00").is_err());
        assert!(solar("sunrise:52.5:13.4").is_ok());
        assert!(solar("sunrise:91:13.4").is_err());
        assert!(solar("brunch:0:0").is_err());
        assert!(timezone("Europe/Berlin").is_ok());
        assert!(timezone("UTC").is_ok());
        assert!(timezone("localtime").is_err());
        assert!(timezone("Mars/Olympus").is_err());
    }
}
