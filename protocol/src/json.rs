//! A JSON value model and parser with Python `json.loads` semantics.
//!
//! The HMAC covers a re-serialisation of what Python *parsed*, so the parser
//! must agree with Python on every value: integers of any size stay exact and
//! distinct from floats, the last duplicate key wins, `NaN`/`Infinity` parse
//! (and fail later, at canonicalisation), lone surrogate escapes parse (and
//! fail later too).

use compact_str::CompactString;
use std::fmt;

/// Nesting deeper than this is refused (Python's own limit is its recursion
/// limit, about 1000; real frames nest a handful of levels).
pub const MAX_DEPTH: usize = 512;

/// CPython 3.11 refuses integer literals longer than this (`sys.int_info`).
pub const MAX_INT_DIGITS: usize = 4300;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(Int),
    Float(f64),
    Str(JStr),
    Array(Vec<Value>),
    Object(Object),
}

/// An integer of unbounded size. Small values avoid allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Int {
    Small(i64),
    /// Normalised decimal text (optional `-`, no leading zeros), outside `i64`.
    Big(Box<str>),
}

impl Int {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Int::Small(v) => Some(*v),
            Int::Big(_) => None,
        }
    }

    /// True for values greater than zero, whatever their size.
    pub fn is_positive(&self) -> bool {
        match self {
            Int::Small(v) => *v > 0,
            Int::Big(s) => !s.starts_with('-'),
        }
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Int::Small(v) => write!(f, "{v}"),
            Int::Big(s) => f.write_str(s),
        }
    }
}

/// A string as Python holds it. `lone_surrogate` marks text that contained an
/// unpaired `\uD800`-`\uDFFF` escape: Python keeps it, but it cannot be UTF-8
/// encoded, so canonicalisation must fail. The text holds U+FFFD in its place.
///
/// Short strings (most keys and many values) are stored inline, without a
/// heap allocation: parsing allocates far less.
///
/// `plain` records that the text is known to hold no `"`, `\` or control
/// character, so canonical JSON writes it as it is without scanning it
/// again. The parser knows this of every string it read without an escape;
/// equality and order ignore it.
#[derive(Debug, Clone)]
pub struct JStr {
    text: CompactString,
    lone_surrogate: bool,
    plain: bool,
}

impl PartialEq for JStr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.lone_surrogate == other.lone_surrogate
    }
}

impl Eq for JStr {}

impl Ord for JStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.text, self.lone_surrogate).cmp(&(&other.text, other.lone_surrogate))
    }
}

impl PartialOrd for JStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl JStr {
    pub fn new(text: impl AsRef<str>) -> Self {
        JStr {
            text: CompactString::new(text.as_ref()),
            lone_surrogate: false,
            plain: false,
        }
    }

    /// Text the parser read between quotes with no escape in it: it cannot
    /// hold a character canonical JSON escapes.
    fn verbatim(text: &str) -> Self {
        JStr {
            text: CompactString::new(text),
            lone_surrogate: false,
            plain: true,
        }
    }

    /// True when the text needs no escaping in canonical JSON (known, not
    /// checked: false only means "not known").
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn has_lone_surrogate(&self) -> bool {
        self.lone_surrogate
    }

    /// Length in code points, as Python's `len()` counts.
    pub fn char_len(&self) -> usize {
        self.text.chars().count()
    }
}

/// An object: entries sorted by key (code point order), keys unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    entries: Vec<(JStr, Value)>,
}

impl Object {
    pub fn new() -> Self {
        Object::default()
    }

    /// Builds from entries in wire order; on duplicate keys the last wins.
    pub fn from_entries(mut entries: Vec<(JStr, Value)>) -> Self {
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted {
            // Reversed, a stable sort puts the wire's last duplicate first
            // among equal keys, and dedup keeps the first of each run.
            entries.reverse();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|later, kept| later.0 == kept.0);
        }
        Object { entries }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces, keeping the order invariant.
    pub fn insert(&mut self, key: &str, value: Value) {
        match self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (JStr::new(key), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.entries.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&JStr, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Value {
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Str(JStr::new(s))
    }

    pub fn int(v: i64) -> Value {
        Value::Int(Int::Small(v))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A strict integer (never a bool or float) that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i.as_i64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The Python type name, for error messages that mirror the reference.
    pub fn python_type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Array(_) => "list",
            Value::Object(_) => "dict",
        }
    }
}

/// Why the bytes are not a JSON document Python would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}: line {line} column {column} (char {offset})")]
pub struct ParseError {
    pub message: &'static str,
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

/// Parses one JSON document with Python `json.loads` semantics.
pub fn parse(input: &[u8]) -> Result<Value, ParseError> {
    let text = std::str::from_utf8(input).map_err(|e| ParseError {
        message: "invalid UTF-8",
        offset: e.valid_up_to(),
        line: 1,
        column: e.valid_up_to() + 1,
    })?;
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("Extra data"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, message: &'static str) -> ParseError {
        let before = &self.text.as_bytes()[..self.pos.min(self.s.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        // Python counts characters, not bytes.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        let offset = String::from_utf8_lossy(before).chars().count();
        ParseError {
            message,
            offset,
            line,
            column,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn starts_with(&self, lit: &[u8]) -> bool {
        self.s[self.pos..].starts_with(lit)
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.s.get(self.pos) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'n') if self.starts_with(b"null") => {
                self.pos += 4;
                Ok(Value::Null)
            }
            Some(b't') if self.starts_with(b"true") => {
                self.pos += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.starts_with(b"false") => {
                self.pos += 5;
                Ok(Value::Bool(false))
            }
            Some(b'N') if self.starts_with(b"NaN") => {
                self.pos += 3;
                Ok(Value::Float(f64::NAN))
            }
            Some(b'I') if self.starts_with(b"Infinity") => {
                self.pos += 8;
                Ok(Value::Float(f64::INFINITY))
            }
            Some(b'-') if self.starts_with(b"-Infinity") => {
                self.pos += 9;
                Ok(Value::Float(f64::NEG_INFINITY))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("Expecting value")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("maximum nesting depth exceeded"));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Object(Object::new()));
        }
        // Most frame objects have at most 8 keys: one allocation, no regrowth.
        let mut entries = Vec::with_capacity(8);
        loop {
            if self.s.get(self.pos) != Some(&b'"') {
                return Err(self.err("Expecting property name enclosed in double quotes"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b':') {
                return Err(self.err("Expecting ':' delimiter"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value()?;
            entries.push((key, v));
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err("Expecting ',' delimiter")),
            }
        }
        self.depth -= 1;
        Ok(Value::Object(Object::from_entries(entries)))
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        self.enter()?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err("Expecting ',' delimiter")),
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("Invalid \\uXXXX escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("Invalid \\uXXXX escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<JStr, ParseError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        // Fast path: no escapes.
        match crate::scan::find_special(&self.s[self.pos..]) {
            None => {
                self.pos = self.s.len();
                return Err(self.err("Unterminated string starting at"));
            }
            Some(i) => {
                self.pos += i;
                match self.s[self.pos] {
                    b'"' => {
                        let text = &self.text[start..self.pos];
                        self.pos += 1;
                        return Ok(JStr::verbatim(text));
                    }
                    b'\\' => {}
                    _ => return Err(self.err("Invalid control character at")),
                }
            }
        }
        let mut out = String::from(&self.text[start..self.pos]);
        let mut lone = false;
        loop {
            let b = match self.s.get(self.pos) {
                Some(&b) => b,
                None => return Err(self.err("Unterminated string starting at")),
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(JStr {
                        text: CompactString::from(out),
                        lone_surrogate: lone,
                        plain: false,
                    });
                }
                0..=0x1f => return Err(self.err("Invalid control character at")),
                b'\\' => {
                    self.pos += 1;
                    let esc = *self
                        .s
                        .get(self.pos)
                        .ok_or_else(|| self.err("Unterminated string starting at"))?;
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi) && self.starts_with(b"\\u") {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                    out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                    continue;
                                }
                                // Not a low surrogate: the high one stands alone.
                                self.pos = save;
                            }
                            match char::from_u32(hi) {
                                Some(c) => out.push(c),
                                None => {
                                    lone = true;
                                    out.push('\u{fffd}');
                                }
                            }
                        }
                        _ => {
                            self.pos -= 2;
                            return Err(self.err("Invalid \\escape"));
                        }
                    }
                }
                _ => {
                    // Copy one whole UTF-8 sequence.
                    let len = utf8_len(b);
                    out.push_str(&self.text[self.pos..self.pos + len]);
                    self.pos += len;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        if self.s[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.s.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.s.get(self.pos) {
                    self.pos += 1;
                }
            }
            _ => {
                self.pos = start;
                return Err(self.err("Expecting value"));
            }
        }
        let int_end = self.pos;
        let mut is_float = false;
        if self.s.get(self.pos) == Some(&b'.')
            && matches!(self.s.get(self.pos + 1), Some(b'0'..=b'9'))
        {
            is_float = true;
            self.pos += 1;
            while let Some(b'0'..=b'9') = self.s.get(self.pos) {
                self.pos += 1;
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.pos) {
            let mut p = self.pos + 1;
            if let Some(b'+' | b'-') = self.s.get(p) {
                p += 1;
            }
            if matches!(self.s.get(p), Some(b'0'..=b'9')) {
                is_float = true;
                self.pos = p;
                while let Some(b'0'..=b'9') = self.s.get(self.pos) {
                    self.pos += 1;
                }
            }
        }
        let lit = &self.text[start..self.pos];
        if is_float {
            // Rust's float parsing is correctly rounded, like Python's; an
            // overflow becomes infinity in both.
            let f: f64 = lit.parse().map_err(|_| self.err("Expecting value"))?;
            return Ok(Value::Float(f));
        }
        let digits = &self.text[start..int_end];
        if digits.trim_start_matches('-').len() > MAX_INT_DIGITS {
            return Err(self.err("Exceeds the limit (4300 digits) for integer string conversion"));
        }
        if let Ok(v) = digits.parse::<i64>() {
            return Ok(Value::Int(Int::Small(v)));
        }
        Ok(Value::Int(Int::Big(digits.into())))
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_ints_stay_exact_and_minus_zero_is_zero() {
        let v = parse(b"[123456789012345678901234567890,-0,-9223372036854775809]").unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(
            a[0],
            Value::Int(Int::Big("123456789012345678901234567890".into()))
        );
        assert_eq!(a[1], Value::Int(Int::Small(0)));
        assert_eq!(a[2], Value::Int(Int::Big("-9223372036854775809".into())));
    }

    #[test]
    fn last_duplicate_wins() {
        let v = parse(br#"{"a":1,"b":0,"a":2}"#).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o.get("a"), Some(&Value::int(2)));
    }

    #[test]
    fn rejects_what_python_rejects() {
        for bad in [
            &b""[..],
            b"{",
            b"[1,]",
            b"{\"a\":1,}",
            b"01",
            b"1.",
            b".5",
            b"\"\x01\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"nul",
            b"\xef\xbb\xbf{}",
            b"\xff",
            b"-",
            b"[1] 2",
        ] {
            assert!(
                parse(bad).is_err(),
                "{:?} should fail",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lone_surrogates_are_marked() {
        let v = parse(br#"["\ud800", "\udc00x", "\ud83d\ude00", "\ud800\u0041"]"#).unwrap();
        let a = v.as_array().unwrap();
        let flags: Vec<bool> = a
            .iter()
            .map(|s| match s {
                Value::Str(s) => s.has_lone_surrogate(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(flags, [true, true, false, true]);
        assert_eq!(a[2].as_str(), Some("😀"));
        assert_eq!(a[3].as_str(), Some("\u{fffd}A"));
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn huge_integer_literal_refused_like_cpython() {
        let lit = "9".repeat(MAX_INT_DIGITS + 1);
        assert!(parse(lit.as_bytes()).is_err());
        assert!(parse(&lit.as_bytes()[1..]).is_ok());
    }

    #[test]
    fn non_standard_literals_parse() {
        let v = parse(b"[NaN,Infinity,-Infinity,1e400]").unwrap();
        let a = v.as_array().unwrap();
        assert!(matches!(a[0], Value::Float(f) if f.is_nan()));
        assert_eq!(a[3], Value::Float(f64::INFINITY));
    }
}
