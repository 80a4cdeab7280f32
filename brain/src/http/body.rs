//! Request bodies: a JSON object read field by field, every problem
//! collected into one FastAPI-style 422 list.

use super::error::{ApiError, SchemaIssue};
use serde_json::{json, Map, Value};

/// Parses the body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::Schema(vec![SchemaIssue {
            kind: "json_invalid",
            loc: vec![json!("body"), json!(e.column())],
            msg: format!("JSON decode error: {e}"),
        }])
    })?;
    let mut issues = Vec::new();
    nul_issues(&v, &mut vec![json!("body")], &mut issues);
    if !issues.is_empty() {
        return Err(ApiError::Schema(issues));
    }
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::Schema(vec![SchemaIssue::new(
            "model_attributes_type",
            &["body"],
            "Input should be a valid dictionary or object",
        )])),
    }
}

/// A NUL character anywhere in the body (a key or a string) is refused,
/// naming where (specs/decisions.md H8): PostgreSQL cannot store one.
fn nul_issues(v: &Value, loc: &mut Vec<Value>, out: &mut Vec<SchemaIssue>) {
    const MAX: usize = 20;
    let refuse = |loc: &[Value], out: &mut Vec<SchemaIssue>| {
        if out.len() < MAX {
            out.push(SchemaIssue::nul(loc.to_vec()));
        }
    };
    match v {
        Value::String(s) if s.contains('\0') => refuse(loc, out),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                loc.push(json!(i));
                nul_issues(item, loc, out);
                loc.pop();
            }
        }
        Value::Object(fields) => {
            for (k, item) in fields {
                loc.push(json!(k));
                if k.contains('\0') {
                    refuse(loc, out);
                }
                nul_issues(item, loc, out);
                loc.pop();
            }
        }
        _ => {}
    }
}

pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    pub issues: Vec<SchemaIssue>,
}

impl<'a> Fields<'a> {
    pub fn new(obj: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            obj,
            issues: Vec::new(),
        }
    }

    /// A required e-mail address (3..=320 characters), canonicalised; a
    /// malformed one is a `value_error` on the field.
    pub fn email(&mut self, name: &'static str) -> Option<String> {
        let raw = self.text(name, 3, 320, true)?;
        let canonical = crate::auth::email::canonical(&raw);
        if canonical.is_none() {
            self.issues.push(SchemaIssue::new(
                "value_error",
                &["body", name],
                "Value error, not a valid email address",
            ));
        }
        canonical
    }

    /// A string of `min..=max` characters; absent/null optional → `None`.
    pub fn text(
        &mut self,
        name: &'static str,
        min: usize,
        max: usize,
        required: bool,
    ) -> Option<String> {
        match self.obj.get(name) {
            None | Some(Value::Null) if !required => None,
            None => {
                self.issues.push(SchemaIssue::new(
                    "missing",
                    &["body", name],
                    "Field required",
                ));
                None
            }
            Some(Value::String(s)) => {
                let n = s.chars().count();
                if n < min {
                    self.issues.push(SchemaIssue::new(
                        "string_too_short",
                        &["body", name],
                        format!("String should have at least {min} characters"),
                    ));
                } else if n > max {
                    self.issues.push(SchemaIssue::new(
                        "string_too_long",
                        &["body", name],
                        format!("String should have at most {max} characters"),
                    ));
                }
                Some(s.clone())
            }
            Some(_) => {
                self.issues.push(SchemaIssue::new(
                    "string_type",
                    &["body", name],
                    "Input should be a valid string",
                ));
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &'static str, default: bool) -> bool {
        match self.obj.get(name) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.issues.push(SchemaIssue::new(
                    "bool_type",
                    &["body", name],
                    "Input should be a valid boolean",
                ));
                default
            }
        }
    }

    /// `value` when no problem was recorded, else the 422 list.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(v) if self.issues.is_empty() => Ok(v),
            _ => Err(ApiError::Schema(self.issues)),
        }
    }
}
