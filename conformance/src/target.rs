//! A target: how to start a brain and what it claims to support.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// argv that starts the brain; `{bin}` is substituted.
    pub command: Vec<String>,
    /// argv prefix for one-shot CLI commands (`config show`, ...).
    #[serde(default)]
    pub cli: Vec<String>,
    #[serde(default = "default_startup")]
    pub startup_timeout_seconds: u64,
    /// Extra environment for every start.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra environment where the suite provisions a PostgreSQL database
    /// (with the shared secrets replicas need).
    #[serde(default)]
    pub postgres_env: BTreeMap<String, String>,
    /// Optional features the implementation claims.
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
    /// A Python implementation: the virtualenv the suite creates for it.
    #[serde(default)]
    pub venv: Option<Venv>,
    /// Clauses the implementation does not claim, each with the reason.
    /// They are reported as "not claimed", never as passed; every other
    /// clause must be judged (under CI a skipped or uncovered one fails the
    /// run).
    #[serde(default)]
    pub not_claimed: BTreeMap<String, String>,
    /// Behaviour mutants the implementation can be started with
    /// (`z4j-conformance mutate`).
    #[serde(default)]
    pub mutant: Vec<BehaviourMutant>,
}

/// `[[mutant]]`: a deliberately broken behaviour, switched on by `env`;
/// the cases of `clauses` must fail against it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourMutant {
    pub name: String,
    pub description: String,
    pub env: BTreeMap<String, String>,
    pub clauses: Vec<String>,
}

/// `[venv]`: pinned packages installed into a virtualenv the suite owns;
/// `{venv}` in `command` and `cli` is its directory.
#[derive(Debug, Clone, Deserialize)]
pub struct Venv {
    pub packages: Vec<String>,
    /// The interpreter that creates it.
    #[serde(default = "default_python")]
    pub python: String,
}

fn default_python() -> String {
    "python3".into()
}

fn default_startup() -> u64 {
    30
}

impl Target {
    /// The file as written, nothing substituted (for `--list`).
    pub fn read(path: &Path) -> Result<Target, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read target file: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: invalid target file: {e}", path.display()))
    }

    pub fn load(path: &Path, bin: Option<&str>) -> Result<Target, String> {
        let mut t = Target::read(path)?;
        if t.command.is_empty() {
            return Err(format!("{}: `command` must not be empty", path.display()));
        }
        let bin = bin
            .map(str::to_owned)
            .or_else(|| std::env::var("Z4J_CONFORMANCE_BIN").ok());
        let uses_bin = t.command.iter().chain(&t.cli).any(|a| a.contains("{bin}"));
        if uses_bin && bin.is_none() {
            return Err(format!(
                "{}: the target needs {{bin}}; pass --bin PATH or set Z4J_CONFORMANCE_BIN",
                path.display()
            ));
        }
        let venv_dir = match &t.venv {
            Some(v) => crate::python::target_venv(&t.name, v)?,
            None => Default::default(),
        };
        let sub = |a: &String| {
            a.replace("{bin}", bin.as_deref().unwrap_or(""))
                .replace("{venv}", &venv_dir.display().to_string())
        };
        t.command = t.command.iter().map(sub).collect();
        t.cli = t.cli.iter().map(sub).collect();
        Ok(t)
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features.get(feature).copied().unwrap_or(false)
    }
}
