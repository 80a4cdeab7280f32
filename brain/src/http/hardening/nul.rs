//! A NUL character in the path or a query parameter is refused with 422
//! naming where, before routing (specs/decisions.md H8): no handler has to
//! think about it, and PostgreSQL, which cannot store or compare one, never
//! sees it. Request bodies are checked where they are parsed (`http::body`).

use crate::http::error::{ApiError, SchemaIssue};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The places of a request's NUL characters: the path, or each query
/// parameter by name.
pub fn issues(path: &str, query: Option<&str>) -> Vec<SchemaIssue> {
    let mut out = Vec::new();
    // A URI cannot hold a raw NUL: only its escape decodes to one, so a
    // request without `%00` (nearly all) is not decoded here at all.
    if path.contains("%00") {
        out.push(SchemaIssue::nul(vec![json!("path")]));
    }
    let Some(query) = query.filter(|q| q.contains("%00")) else {
        return out;
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name.contains('\0') || value.contains('\0') {
            out.push(SchemaIssue::nul(vec![json!("query"), json!(name)]));
        }
    }
    out
}

pub async fn layer(req: Request, next: Next) -> Response {
    let found = issues(req.uri().path(), req.uri().query());
    if found.is_empty() {
        next.run(req).await
    } else {
        ApiError::Schema(found).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::issues;

    #[test]
    fn nul_characters_are_found_where_they_are() {
        assert!(issues("/api/v1/projects/default/tasks", Some("name=a&b=c")).is_empty());
        assert!(issues("/api/v1/projects/default/tasks", None).is_empty());
        let q = issues("/api/v1/x", Some("name=a%00b&ok=1&c%00=2"));
        let locs: Vec<_> = q.iter().map(|i| i.loc.clone()).collect();
        assert_eq!(
            locs,
            vec![
                vec![serde_json::json!("query"), serde_json::json!("name")],
                vec![serde_json::json!("query"), serde_json::json!("c\0")]
            ]
        );
        assert_eq!(issues("/api/v1/tasks/rq/a%00b", None).len(), 1);
        assert!(issues("/api/v1/tasks/rq/a%2500b", None).is_empty());
    }
}
