//! One settings struct, built once at start-up from
//! defaults < `~/.z4j/secret.env` < `~/.z4j/config.env` < `./.env` <
//! process environment < command-line flags. No other module reads the
//! environment.

pub mod allowed_hosts;
mod catalog;
pub mod mutant;
mod sources;
mod validate;
pub mod value;

pub use catalog::{is_known, spec, Settings, VarSpec, CATALOG};
pub use sources::{FileError, Source, SECRET_ENV_KEYS};
pub use validate::{check_host_pattern, DatabaseTarget};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The z4j compatibility level this brain implements (what agents compare
/// with their own version, and what `/health` reports).
pub const BRAIN_VERSION: &str = "1.13.0";

/// A refusal to start: names the variable, the value's problem and what is
/// accepted. Secret values are never echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub variable: String,
    pub problem: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    File(#[from] FileError),
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<SettingError>),
}

/// What the loader reads; the real process passes its environment, tests
/// pass their own.
#[derive(Debug, Clone, Default)]
pub struct LoadInput {
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// `--host`/`--port` and friends, as variable names.
    pub cli: Vec<(&'static str, String)>,
}

impl LoadInput {
    pub fn from_process(cli: Vec<(&'static str, String)>) -> LoadInput {
        LoadInput {
            env: std::env::vars().collect(),
            cwd: std::env::current_dir().ok(),
            cli,
        }
    }

    fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Settings {
    /// `Z4J_SECRET` first, then each `Z4J_PREVIOUS_SECRETS` entry: the keys
    /// that still verify and decrypt during a rotation (writes use the first).
    pub fn master_secrets(&self) -> Vec<&str> {
        self.secret
            .iter()
            .chain(self.previous_secrets.0.iter())
            .map(String::as_str)
            .filter(|k| !k.is_empty())
            .collect()
    }
}

/// The effective configuration plus where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub home: PathBuf,
    pub sources: BTreeMap<&'static str, Source>,
    pub warnings: Vec<String>,
    pub database: DatabaseTarget,
    /// What an embedded scheduler child inherits from this process.
    pub child_env: ChildEnv,
}

/// The part of the brain's process environment its embedded scheduler
/// inherits (scheduler spec §6.3): a few exact names, `LC_*` and
/// `Z4J_SCHEDULER_*`; nothing else (database URL, secrets, cloud keys).
/// `Debug` shows names only.
#[derive(Clone, Default)]
pub struct ChildEnv(pub Vec<(String, String)>);

const CHILD_ENV_NAMES: &[&str] = &[
    "PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "HOME",
    "USER",
    "LOGNAME",
    "TERM",
    "TMPDIR",
    "TMP",
    "TEMP",
];

impl ChildEnv {
    pub fn inherited(env: &[(String, String)]) -> ChildEnv {
        ChildEnv(
            env.iter()
                .filter(|(k, _)| {
                    CHILD_ENV_NAMES.contains(&k.as_str())
                        || k.starts_with("LC_")
                        || k.starts_with("Z4J_SCHEDULER_")
                })
                .cloned()
                .collect(),
        )
    }
}

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// `$Z4J_HOME`, else `$HOME/.z4j`.
pub fn home_dir(input: &LoadInput) -> PathBuf {
    if let Some(h) = input.env_var("Z4J_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = input.env_var("HOME").unwrap_or(".");
    Path::new(home).join(".z4j")
}

pub fn secret_env_path(home: &Path) -> PathBuf {
    home.join("secret.env")
}

pub fn config_env_path(home: &Path) -> PathBuf {
    home.join("config.env")
}

/// The entries of `secret.env` (empty when absent), with its rules applied.
pub fn read_secret_env(path: &Path) -> Result<Vec<(String, String)>, FileError> {
    let entries = sources::read_env_file(path, true)?;
    sources::check_secret_env(path, &entries)?;
    Ok(entries)
}

/// Loads, merges and validates every source.
pub fn load(input: &LoadInput) -> Result<Loaded, LoadError> {
    let home = home_dir(input);
    let secret_path = secret_env_path(&home);
    let secret_entries = read_secret_env(&secret_path)?;
    let config_entries = sources::read_env_file(&config_env_path(&home), false)?;
    let dotenv_entries = match &input.cwd {
        Some(cwd) => sources::read_env_file(&cwd.join(".env"), false)?,
        None => Vec::new(),
    };

    let mut merged: BTreeMap<String, (String, Source)> = BTreeMap::new();
    let layers: [(Source, Vec<(String, String)>); 5] = [
        (Source::SecretEnv, secret_entries),
        (Source::ConfigEnv, config_entries),
        (Source::DotEnv, dotenv_entries),
        (
            Source::Environment,
            input
                .env
                .iter()
                .filter(|(k, _)| k.starts_with("Z4J_"))
                .cloned()
                .collect(),
        ),
        (
            Source::Cli,
            input
                .cli
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        ),
    ];
    let mut warnings = Vec::new();
    for (source, entries) in layers {
        for (k, v) in entries {
            if k.starts_with("Z4J_") && !is_known(&k) {
                warnings.push(unknown_variable_warning(&k, source));
                continue;
            }
            merged.insert(k, (v, source));
        }
    }

    let lookup = |name: &str| merged.get(name).map(|(v, _)| v.clone());
    let settings = Settings::parse_all(&lookup).map_err(|errs| {
        LoadError::Invalid(
            errs.into_iter()
                .map(|(var, raw, problem)| SettingError {
                    variable: var.to_owned(),
                    problem: if spec(var).is_some_and(|s| s.secret) {
                        problem.replace(&raw, "<redacted>")
                    } else {
                        problem
                    },
                })
                .collect(),
        )
    })?;
    let sources = CATALOG
        .iter()
        .map(|s| {
            let src = merged.get(s.env).map_or(Source::Default, |(_, src)| *src);
            (s.env, src)
        })
        .collect();
    let (settings, database) = validate::check(settings, &home).map_err(LoadError::Invalid)?;
    Ok(Loaded {
        settings,
        home,
        sources,
        warnings,
        database,
        child_env: ChildEnv::inherited(&input.env),
    })
}

fn unknown_variable_warning(name: &str, source: Source) -> String {
    let near = CATALOG
        .iter()
        .map(|s| (strsim(name, s.env), s.env))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 3)
        .map(|(_, n)| format!(" (did you mean {n}?)"))
        .unwrap_or_default();
    if name.starts_with("Z4J_SCHEDULER_") && source == Source::Environment {
        // The scheduler's own variables: an embedded scheduler inherits them.
        return format!(
            "{name} in {} is not a brain variable; only an embedded scheduler (Z4J_EMBEDDED_SCHEDULER) reads it{near}",
            source.label()
        );
    }
    format!(
        "unknown variable {name} in {} is ignored{near}",
        source.label()
    )
}

/// Edit distance, for typo suggestions.
fn strsim(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Loaded {
    /// `config show`: every variable, its effective value (secrets masked)
    /// and its source, grouped by section.
    pub fn render(&self, reveal_secrets: bool) -> String {
        let values = self.raw_values();
        let mut out = String::new();
        let mut section = "";
        for s in CATALOG {
            if s.section != section {
                section = s.section;
                out.push_str(&format!("\n[{section}]\n"));
            }
            let raw = values.get(s.env).cloned().unwrap_or_default();
            let shown = if s.secret && !raw.is_empty() && !reveal_secrets {
                "***".to_owned()
            } else {
                raw
            };
            let src = self.sources.get(s.env).copied().unwrap_or(Source::Default);
            out.push_str(&format!("{}={}    # {}\n", s.env, shown, src.label()));
        }
        out
    }

    /// Effective values as text, for display.
    pub fn raw_values(&self) -> BTreeMap<&'static str, String> {
        self.settings.render_values()
    }
}

#[cfg(test)]
mod tests;
