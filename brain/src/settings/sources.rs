//! Reading `KEY=VALUE` files (`~/.z4j/config.env`, `~/.z4j/secret.env`,
//! `./.env`) with the rules the reference applies to them.

use std::path::{Path, PathBuf};

/// Where an effective value came from, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Default,
    SecretEnv,
    ConfigEnv,
    DotEnv,
    Environment,
    Cli,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::SecretEnv => "~/.z4j/secret.env",
            Source::ConfigEnv => "~/.z4j/config.env",
            Source::DotEnv => "./.env",
            Source::Environment => "environment",
            Source::Cli => "command line",
        }
    }
}

/// Keys `secret.env` may hold; anything else refuses the file.
pub const SECRET_ENV_KEYS: &[&str] = &[
    "Z4J_SECRET",
    "Z4J_SESSION_SECRET",
    "Z4J_METRICS_AUTH_TOKEN",
    "Z4J_AUDIT_CHAIN_SECRET",
    "Z4J_AUDIT_CHAIN_PREVIOUS_SECRETS",
];

pub const SECRET_ENV_MAX_BYTES: u64 = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Syntax {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Refused { path: PathBuf, problem: String },
}

/// Parses `KEY=VALUE` lines; `#` comments and blank lines are skipped, an
/// optional `export ` prefix and matching quotes around the value are removed.
pub fn parse_env_text(path: &Path, text: &str) -> Result<Vec<(String, String)>, FileError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").unwrap_or(t);
        let syntax = |problem: &str| FileError::Syntax {
            path: path.to_owned(),
            line: i + 1,
            problem: problem.to_owned(),
        };
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| syntax("expected KEY=VALUE"))?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(syntax("the key must be letters, digits and underscores"));
        }
        let mut v = v.trim();
        for q in ['"', '\''] {
            if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
                v = &v[1..v.len() - 1];
            }
        }
        if v.contains('\0') {
            return Err(syntax("the value contains a NUL byte"));
        }
        if out.iter().any(|(e, _)| e == k) {
            return Err(syntax(&format!("{k} is set twice")));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Reads an env file if it exists. `secret_holder` files must not be
/// readable by group or others.
pub fn read_env_file(path: &Path, holds_secrets: bool) -> Result<Vec<(String, String)>, FileError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    if holds_secrets && meta.len() > SECRET_ENV_MAX_BYTES {
        return Err(FileError::Refused {
            path: path.to_owned(),
            problem: format!("larger than {SECRET_ENV_MAX_BYTES} bytes"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let entries = parse_env_text(path, &text)?;
    let has_secret = entries
        .iter()
        .any(|(k, _)| super::catalog::spec(k).is_some_and(|s| s.secret));
    if (holds_secrets || has_secret) && group_or_other_readable(&meta) {
        return Err(FileError::Refused {
            path: path.to_owned(),
            problem: "holds secrets but is readable by group or others; run chmod 600 on it"
                .to_owned(),
        });
    }
    Ok(entries)
}

#[cfg(unix)]
fn group_or_other_readable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o077 != 0
}

#[cfg(not(unix))]
fn group_or_other_readable(_: &std::fs::Metadata) -> bool {
    false
}

/// Checks `secret.env` content: only the allowed keys, no empty values.
pub fn check_secret_env(path: &Path, entries: &[(String, String)]) -> Result<(), FileError> {
    for (k, v) in entries {
        if !SECRET_ENV_KEYS.contains(&k.as_str()) {
            return Err(FileError::Refused {
                path: path.to_owned(),
                problem: format!(
                    "{k} is not allowed here; secret.env may hold only {}",
                    SECRET_ENV_KEYS.join(", ")
                ),
            });
        }
        if v.is_empty() {
            return Err(FileError::Refused {
                path: path.to_owned(),
                problem: format!("{k} has an empty value"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_export() {
        let p = Path::new("x.env");
        let e = parse_env_text(p, "# c\n\nexport A=1\nB = \"two words\"\nC='x'\n").unwrap();
        assert_eq!(
            e,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into())
            ]
        );
    }

    #[test]
    fn refuses_malformed_lines_naming_the_line() {
        let p = Path::new("x.env");
        let err = parse_env_text(p, "A=1\nnonsense\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "x.env:2: expected KEY=VALUE");
        assert!(parse_env_text(p, "A=1\nA=2").is_err());
    }

    #[test]
    fn secret_env_allows_only_its_keys() {
        let p = Path::new("secret.env");
        assert!(check_secret_env(p, &[("Z4J_SECRET".into(), "x".into())]).is_ok());
        assert!(check_secret_env(p, &[("Z4J_BIND_PORT".into(), "1".into())]).is_err());
        assert!(check_secret_env(p, &[("Z4J_SECRET".into(), "".into())]).is_err());
    }
}
