//! First-boot secrets in `~/.z4j/secret.env`: minted when absent, written
//! atomically with mode 0600 in a 0700 directory.

use crate::settings::{DatabaseTarget, Loaded, SECRET_ENV_KEYS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("{path}: {problem}")]
    Home { path: String, problem: String },
    #[error("{0}")]
    Refused(String),
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// 48 random bytes → 64 URL-safe characters (32 bytes → 43 for tokens).
pub fn random_token(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(buf)
}

/// Creates `home` with mode 0700 if missing; refuses a home that others can
/// read or that is not writable.
pub fn ensure_home(home: &Path) -> Result<(), SecretStoreError> {
    let fail = |problem: String| SecretStoreError::Home {
        path: home.display().to_string(),
        problem,
    };
    if !home.exists() {
        std::fs::create_dir_all(home).map_err(|e| fail(format!("cannot create directory: {e}")))?;
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(format!("cannot set mode 0700: {e}")))?;
    }
    let meta = std::fs::metadata(home).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Err(fail("is not a directory".into()));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(fail(
            "is readable by group or others; run chmod 700 on it (it holds secrets)".into(),
        ));
    }
    let probe = home.join(".z4j-write-probe");
    std::fs::write(&probe, b"").map_err(|e| fail(format!("is not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Which secrets are missing from every source and must be minted.
pub fn missing_keys(loaded: &Loaded) -> Vec<&'static str> {
    let s = &loaded.settings;
    let mut missing = Vec::new();
    if s.secret.is_none() {
        missing.push("Z4J_SECRET");
    }
    if s.session_secret.is_none() {
        missing.push("Z4J_SESSION_SECRET");
    }
    if s.audit_chain_secret.is_none() {
        missing.push("Z4J_AUDIT_CHAIN_SECRET");
    }
    // As documented: minted unless public (whether or not the route is mounted).
    if s.metrics_auth_token.is_none() && !s.metrics_public {
        missing.push("Z4J_METRICS_AUTH_TOKEN");
    }
    missing
}

/// Mints what is missing. Returns the names minted (sorted); the caller
/// reloads the settings afterwards.
pub fn mint_missing(loaded: &Loaded) -> Result<Vec<&'static str>, SecretStoreError> {
    let mut missing = missing_keys(loaded);
    if missing.is_empty() {
        return Ok(missing);
    }
    let core_missing: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|k| *k != "Z4J_METRICS_AUTH_TOKEN")
        .collect();
    match &loaded.database {
        DatabaseTarget::Postgres { .. } => {
            // Replicas share one database, so they must share one secret:
            // none of them may invent its own.
            let required: Vec<&str> = core_missing
                .iter()
                .copied()
                .filter(|k| *k != "Z4J_AUDIT_CHAIN_SECRET")
                .collect();
            if !required.is_empty() {
                return Err(SecretStoreError::Refused(format!(
                    "{} must be configured when Z4J_DATABASE_URL points at PostgreSQL (every replica needs the same value); nothing is minted for a shared database",
                    required.join(" and ")
                )));
            }
            missing.retain(|k| *k == "Z4J_METRICS_AUTH_TOKEN");
        }
        DatabaseTarget::Sqlite { path, .. } => {
            let secret_env = crate::settings::secret_env_path(&loaded.home);
            if !core_missing.is_empty() && path.exists() && !secret_env.exists() {
                return Err(SecretStoreError::Refused(format!(
                    "{} already exists but {} is missing and {} is not configured; refusing to mint replacement keys for existing data (restore secret.env or set the variables)",
                    path.display(),
                    secret_env.display(),
                    core_missing.join(", ")
                )));
            }
        }
    }
    if missing.is_empty() {
        return Ok(missing);
    }
    ensure_home(&loaded.home)?;
    let path = crate::settings::secret_env_path(&loaded.home);
    let mut entries = crate::settings::read_secret_env(&path)
        .map_err(|e| SecretStoreError::Refused(e.to_string()))?;
    for key in &missing {
        let value = if *key == "Z4J_METRICS_AUTH_TOKEN" {
            random_token(32)
        } else {
            random_token(48)
        };
        entries.retain(|(k, _)| k != key);
        entries.push(((*key).to_owned(), value));
    }
    write_secret_env(&path, &entries)?;
    missing.sort_unstable();
    Ok(missing)
}

/// Writes `secret.env` atomically: temp file (0600) in the same directory,
/// fsync, rename. Keys sorted, one per line.
pub fn write_secret_env(path: &Path, entries: &[(String, String)]) -> Result<(), SecretStoreError> {
    let werr = |source| SecretStoreError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut sorted: Vec<&(String, String)> = entries.iter().collect();
    sorted.sort();
    debug_assert!(sorted
        .iter()
        .all(|(k, _)| SECRET_ENV_KEYS.contains(&k.as_str())));
    let tmp = path.with_extension(format!("env.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    let mut text = String::new();
    for (k, v) in sorted {
        text.push_str(&format!("{k}={v}\n"));
    }
    let result = f
        .write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(e));
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
