//! The clause catalogue (`specs/clauses.toml`).

use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct Clause {
    pub id: String,
    pub section: String,
    #[serde(default)]
    pub default: Option<String>,
    pub level: String,
    pub guarantee: String,
}

#[derive(Debug, Deserialize)]
struct File {
    clause: Vec<Clause>,
}

pub fn load(path: &Path) -> Result<Vec<Clause>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the clause catalogue: {e}", path.display()))?;
    let f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    for c in &f.clause {
        if !seen.insert(c.id.clone()) {
            return Err(format!(
                "{}: clause {} is listed twice",
                path.display(),
                c.id
            ));
        }
    }
    Ok(f.clause)
}

/// The first of `ids` that is not a clause of `catalogue`.
pub fn first_unknown<'a>(
    catalogue: &[Clause],
    ids: impl IntoIterator<Item = &'a String>,
) -> Option<&'a String> {
    ids.into_iter()
        .find(|id| !catalogue.iter().any(|c| &c.id == *id))
}
