//! Parsing one raw setting string into its typed value, with the checks the
//! documentation states. Errors say what is wrong and what is accepted.

use ipnet::IpNet;

/// A documented constraint on a value.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    None,
    Int(i64, i64),
    Float(f64, f64),
    OneOf(&'static [&'static str]),
    MaxLen(usize),
    /// Every comma-separated entry at least this many bytes.
    EntryMinBytes(usize),
}

impl Check {
    /// The accepted range, for `config show` and error messages.
    pub fn describe(&self) -> String {
        match self {
            Check::None => String::new(),
            Check::Int(lo, hi) => format!("{lo}..{hi}"),
            Check::Float(lo, hi) => format!("{lo}..{hi}"),
            Check::OneOf(opts) => opts.join("|"),
            Check::MaxLen(n) => format!("at most {n} characters"),
            Check::EntryMinBytes(n) => format!("each entry at least {n} bytes"),
        }
    }
}

/// A type a setting can have.
pub trait SettingValue: Sized {
    /// `raw` is the text as configured ("" = unset for optional kinds).
    fn parse_setting(raw: &str, check: &Check) -> Result<Self, String>;
    /// The value as it would be written in an env file.
    fn render(&self) -> String;
}

impl SettingValue for i64 {
    fn parse_setting(raw: &str, check: &Check) -> Result<Self, String> {
        let v: i64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("{raw:?} is not a whole number"))?;
        if let Check::Int(lo, hi) = check {
            if v < *lo || v > *hi {
                return Err(format!("{v} is out of range; accepted: {lo}..{hi}"));
            }
        }
        Ok(v)
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for f64 {
    fn parse_setting(raw: &str, check: &Check) -> Result<Self, String> {
        let v: f64 = raw
            .trim()
            .parse()
            .ok()
            .filter(|f: &f64| f.is_finite())
            .ok_or_else(|| format!("{raw:?} is not a number"))?;
        if let Check::Float(lo, hi) = check {
            if v < *lo || v > *hi {
                return Err(format!("{v} is out of range; accepted: {lo}..{hi}"));
            }
        }
        Ok(v)
    }
    fn render(&self) -> String {
        format!("{self:?}")
    }
}

impl SettingValue for bool {
    fn parse_setting(raw: &str, _: &Check) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!(
                "{raw:?} is not a boolean; accepted: true/false, 1/0, yes/no, on/off"
            )),
        }
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    fn parse_setting(raw: &str, check: &Check) -> Result<Self, String> {
        let v = raw.trim().to_owned();
        check_text(&v, check)?;
        Ok(v)
    }
    fn render(&self) -> String {
        self.clone()
    }
}

fn check_text(v: &str, check: &Check) -> Result<(), String> {
    match check {
        Check::OneOf(opts) if !opts.iter().any(|o| o.eq_ignore_ascii_case(v)) => Err(format!(
            "{v:?} is not accepted; accepted: {}",
            opts.join(", ")
        )),
        Check::MaxLen(n) if v.chars().count() > *n => Err(format!("is longer than {n} characters")),
        _ => Ok(()),
    }
}

impl SettingValue for Option<String> {
    fn parse_setting(raw: &str, check: &Check) -> Result<Self, String> {
        let v = raw.trim();
        if v.is_empty() {
            return Ok(None);
        }
        if let Check::EntryMinBytes(n) = check {
            if v.len() < *n {
                return Err(format!("must be at least {n} bytes long (got {})", v.len()));
            }
        }
        check_text(v, check)?;
        Ok(Some(v.to_owned()))
    }
    fn render(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

/// A JSON array of strings (`["a","b"]`); `""` means empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonList(pub Vec<String>);

impl SettingValue for JsonList {
    fn parse_setting(raw: &str, _: &Check) -> Result<Self, String> {
        let t = raw.trim();
        if t.is_empty() {
            return Ok(JsonList::default());
        }
        serde_json::from_str::<Vec<String>>(t)
            .map(JsonList)
            .map_err(|e| format!("must be a JSON array of strings, e.g. [\"a\",\"b\"] ({e})"))
    }
    fn render(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

/// A JSON object (`{"cn": ["slug"]}`); `""` means empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonObject(pub serde_json::Map<String, serde_json::Value>);

impl SettingValue for JsonObject {
    fn parse_setting(raw: &str, _: &Check) -> Result<Self, String> {
        let t = raw.trim();
        if t.is_empty() {
            return Ok(JsonObject::default());
        }
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t)
            .map(JsonObject)
            .map_err(|e| format!("must be a JSON object, e.g. {{\"key\": [\"value\"]}} ({e})"))
    }
    fn render(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

/// Comma-separated entries (blank entries and duplicates skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommaList(pub Vec<String>);

impl SettingValue for CommaList {
    fn parse_setting(raw: &str, check: &Check) -> Result<Self, String> {
        let mut out: Vec<String> = Vec::new();
        for (i, entry) in raw.split(',').map(str::trim).enumerate() {
            if entry.is_empty() || out.iter().any(|e| e == entry) {
                continue;
            }
            if let Check::EntryMinBytes(n) = check {
                if entry.len() < *n {
                    return Err(format!(
                        "entry {} is {} bytes; every entry must be at least {n} bytes long",
                        i + 1,
                        entry.len()
                    ));
                }
            }
            out.push(entry.to_owned());
        }
        Ok(CommaList(out))
    }
    fn render(&self) -> String {
        self.0.join(",")
    }
}

/// A JSON array of CIDRs or plain addresses (a plain address is a /32 or /128).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<IpNet>);

impl SettingValue for Cidrs {
    fn parse_setting(raw: &str, check: &Check) -> Result<Self, String> {
        let JsonList(items) = JsonList::parse_setting(raw, check)?;
        items
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Cidrs)
    }
    fn render(&self) -> String {
        let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        serde_json::to_string(&items).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_the_forms_operators_write() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert!(bool::parse_setting(t, &Check::None).unwrap());
        }
        for f in ["false", "0", "no", "OFF"] {
            assert!(!bool::parse_setting(f, &Check::None).unwrap());
        }
        assert!(bool::parse_setting("maybe", &Check::None).is_err());
    }

    #[test]
    fn ranges_name_the_accepted_range() {
        let e = i64::parse_setting("70000", &Check::Int(1, 65535)).unwrap_err();
        assert!(e.contains("1..65535"), "{e}");
        assert!(i64::parse_setting("x", &Check::Int(1, 2)).is_err());
        assert!(f64::parse_setting("nan", &Check::None).is_err());
    }

    #[test]
    fn lists_and_cidrs() {
        assert_eq!(
            JsonList::parse_setting("[\"a\",\"b\"]", &Check::None)
                .unwrap()
                .0,
            ["a", "b"]
        );
        assert!(JsonList::parse_setting("a,b", &Check::None).is_err());
        let c =
            Cidrs::parse_setting("[\"10.0.0.0/8\",\"127.0.0.1\",\"::1\"]", &Check::None).unwrap();
        assert_eq!(c.0.len(), 3);
        assert!(Cidrs::parse_setting("[\"10.0.0.0/33\"]", &Check::None).is_err());
        let l = CommaList::parse_setting(" a , ,b,a", &Check::None).unwrap();
        assert_eq!(l.0, ["a", "b"]);
        assert!(CommaList::parse_setting("short", &Check::EntryMinBytes(32)).is_err());
    }
}
