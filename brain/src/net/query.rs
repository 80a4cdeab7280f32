//! A request's query string, read parameter by parameter, each problem a
//! FastAPI-style 422 issue naming the parameter (the REST routes and the
//! long-poll transport).

use super::error::SchemaIssue;
use crate::store::Ts;
use std::collections::HashMap;

/// The query's parameters (the last of a repeated name wins).
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<String>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn text(
        &self,
        name: &'static str,
        max: usize,
        issues: &mut Vec<SchemaIssue>,
    ) -> Option<String> {
        let v = self.0.get(name)?;
        if v.chars().count() > max {
            issues.push(SchemaIssue::new(
                "string_too_long",
                &["query", name],
                format!("String should have at most {max} characters"),
            ));
            return None;
        }
        Some(v.clone())
    }

    pub fn int(
        &self,
        name: &'static str,
        lo: i64,
        hi: i64,
        issues: &mut Vec<SchemaIssue>,
    ) -> Option<i64> {
        let raw = self.0.get(name)?;
        match raw.trim().parse::<i64>() {
            Ok(v) if (lo..=hi).contains(&v) => Some(v),
            Ok(v) => {
                issues.push(SchemaIssue::new(
                    if v < lo {
                        "greater_than_equal"
                    } else {
                        "less_than_equal"
                    },
                    &["query", name],
                    format!("Input should be between {lo} and {hi}"),
                ));
                None
            }
            Err(_) => {
                issues.push(SchemaIssue::new(
                    "int_parsing",
                    &["query", name],
                    "Input should be a valid integer, unable to parse string as an integer",
                ));
                None
            }
        }
    }

    pub fn instant(&self, name: &'static str, issues: &mut Vec<SchemaIssue>) -> Option<Ts> {
        let raw = self.0.get(name)?;
        match chrono::DateTime::parse_from_rfc3339(raw.trim()) {
            Ok(t) => Some(Ts(t.with_timezone(&chrono::Utc))),
            Err(_) => {
                issues.push(SchemaIssue::new(
                    "datetime_from_date_parsing",
                    &["query", name],
                    "Input should be a valid datetime",
                ));
                None
            }
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "yes" | "on"))
    }
}
