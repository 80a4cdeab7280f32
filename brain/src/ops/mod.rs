//! The operator subcommands behind `z4j`: what each does, given its
//! arguments already parsed by `cli`.

mod accounts;
mod backup;

pub use accounts::{changepassword, createsuperuser, reset_mfa, reset_setup, Password};
pub use backup::{backup, restore};

use crate::bootstrap::secrets;
use crate::server::{self, StartError};
use crate::settings::{self, allowed_hosts, LoadInput, Loaded, Source};

/// `z4j metrics-token` actions.
pub enum Token {
    Show,
    Rotate,
}

/// `z4j allowed-hosts` actions.
pub enum Hosts {
    List,
    Add(Vec<String>),
    Remove(Vec<String>),
    Path,
}

/// `z4j config show`.
pub fn config_show(reveal_secrets: bool) -> Result<(), StartError> {
    load(Vec::new()).map(|l| print!("{}", l.render(reveal_secrets)))
}

/// The effective settings (warnings printed).
pub fn load(cli_overrides: Vec<(&'static str, String)>) -> Result<Loaded, StartError> {
    load_from(&LoadInput::from_process(cli_overrides))
}

fn load_from(input: &LoadInput) -> Result<Loaded, StartError> {
    let loaded = settings::load(input).map_err(|e| StartError::new(1, e.to_string()))?;
    for w in &loaded.warnings {
        eprintln!("z4j: warning: {w}");
    }
    Ok(loaded)
}

fn runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::new(1, format!("cannot start the async runtime: {e}")))
}

/// `z4j serve`: settings, secrets, logging, then the server.
pub fn serve(host: Option<String>, port: Option<u16>) -> Result<(), StartError> {
    let mut overrides = Vec::new();
    if let Some(h) = host {
        overrides.push(("Z4J_BIND_HOST", h));
    }
    if let Some(p) = port {
        overrides.push(("Z4J_BIND_PORT", p.to_string()));
    }
    // One snapshot of the environment: the bootstrap password is scrubbed
    // from the process below, but a reload must still see it.
    let input = LoadInput::from_process(overrides);
    let mut loaded = load_from(&input)?;
    // Read once, then gone from the environment (single-threaded here).
    let bootstrap_password = loaded.settings.bootstrap_admin_password.take();
    scrub_env_var("Z4J_BOOTSTRAP_ADMIN_PASSWORD");

    ensure_default_home(&loaded)?;
    let minted = secrets::mint_missing(&loaded).map_err(|e| StartError::new(1, e.to_string()))?;
    if !minted.is_empty() {
        println!(
            "z4j: safely persisted independent packaged secrets: {}",
            minted.join(", ")
        );
        // Only the secrets changed; the warnings were printed above.
        loaded = settings::load(&input).map_err(|e| StartError::new(1, e.to_string()))?;
        loaded.settings.bootstrap_admin_password = None;
    }
    let s = &loaded.settings;
    let json = match s.log_format.as_deref() {
        Some(f) => f.eq_ignore_ascii_case("json"),
        None => s.log_json,
    };
    crate::logging::init(json, &s.log_level, &s.environment);
    runtime()?.block_on(server::serve(loaded, bootstrap_password))
}

/// Removes a variable from the environment and overwrites its bytes in the
/// initial environment block, so `/proc/<pid>/environ` no longer shows it.
/// Called before any thread starts.
fn scrub_env_var(name: &str) {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return;
    };
    // SAFETY: single-threaded here; getenv returns a pointer into the
    // environment block (or null), and we overwrite only the value's own
    // bytes up to its terminating NUL before unsetting the variable.
    unsafe {
        let value = libc::getenv(cname.as_ptr());
        if !value.is_null() {
            let len = libc::strlen(value);
            std::ptr::write_bytes(value, 0, len);
        }
    }
    std::env::remove_var(name);
}

/// The embedded default database lives in `~/.z4j`: create it (0700) first.
fn ensure_default_home(loaded: &Loaded) -> Result<(), StartError> {
    if matches!(
        loaded.database,
        settings::DatabaseTarget::Sqlite {
            is_default: true,
            ..
        }
    ) {
        secrets::ensure_home(&loaded.home).map_err(|e| StartError::new(1, e.to_string()))?;
    }
    Ok(())
}

/// A command's failure (exit 1) with the error's own words.
fn fail(e: impl std::fmt::Display) -> StartError {
    StartError::new(1, e.to_string())
}

/// Audit metadata of a command run from the shell: `via: cli` and the
/// operating-system user, plus the command's own `fields`.
fn cli_meta(fields: serde_json::Value) -> serde_json::Value {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            format!("uid {}", unsafe { libc::getuid() })
        });
    let mut meta = serde_json::json!({"via": "cli", "os_user": user});
    if let (Some(m), serde_json::Value::Object(f)) = (meta.as_object_mut(), fields) {
        m.extend(f);
    }
    meta
}

/// Settings for a command that writes to the database as `serve` would:
/// the home created and missing secrets minted first (the audit rows it
/// writes need the master secret).
fn prepared() -> Result<Loaded, StartError> {
    let input = LoadInput::from_process(Vec::new());
    let loaded = load_from(&input)?;
    ensure_default_home(&loaded)?;
    let minted = secrets::mint_missing(&loaded).map_err(|e| StartError::new(1, e.to_string()))?;
    if minted.is_empty() {
        return Ok(loaded);
    }
    println!(
        "z4j: safely persisted independent packaged secrets: {}",
        minted.join(", ")
    );
    settings::load(&input).map_err(|e| StartError::new(1, e.to_string()))
}

/// The configured database, migrated to this build's schema when asked.
async fn open_db(loaded: &Loaded, migrate: bool) -> Result<crate::store::Db, StartError> {
    let db = crate::store::connect(&loaded.database, &loaded.settings)
        .await
        .map_err(|e| StartError::new(1, e.to_string()))?;
    if migrate {
        if let Err(e) = crate::store::migrate(&db).await {
            db.close().await;
            return Err(StartError::new(1, format!("migration failed: {e}")));
        }
    }
    Ok(db)
}

/// `z4j migrate`.
pub fn migrate() -> Result<(), StartError> {
    let loaded = load(Vec::new())?;
    ensure_default_home(&loaded)?;
    runtime()?.block_on(async {
        let db = open_db(&loaded, true).await?;
        println!("z4j: the {} schema is up to date", db.kind());
        db.close().await;
        Ok(())
    })
}

/// `z4j audit verify`.
pub fn audit_verify() -> Result<(), StartError> {
    let loaded = load(Vec::new())?;
    runtime()?.block_on(async {
        let db = open_db(&loaded, false).await?;
        let report = crate::audit::verify(&db, &loaded.settings)
            .await
            .map_err(|e| StartError::new(1, format!("audit verification failed to run: {e}")));
        db.close().await;
        match report?.broken {
            None => {
                println!("z4j: audit chain intact");
                Ok(())
            }
            Some((row, why)) => {
                let at = row.map_or_else(|| "the chain state".to_owned(), |id| format!("row {id}"));
                Err(StartError::new(
                    1,
                    format!("audit chain broken at {at}: {why}"),
                ))
            }
        }
    })
}

/// `z4j audit reseal`.
pub fn audit_reseal(confirm: bool) -> Result<(), StartError> {
    if !confirm {
        return Err(StartError::new(
            2,
            "refusing to re-sign the audit chain state without --confirm; run \
             `z4j audit verify` first to see what is broken"
                .to_owned(),
        ));
    }
    let loaded = load(Vec::new())?;
    runtime()?.block_on(async {
        let db = open_db(&loaded, false).await?;
        let done = crate::audit::reseal(&db, &loaded.settings).await;
        db.close().await;
        let r = done.map_err(|e| StartError::new(1, format!("audit reseal failed: {e}")))?;
        println!(
            "z4j: audit chain state re-signed over {} rows (it said {}); recorded as audit.resealed",
            r.rows, r.previous_count
        );
        Ok(())
    })
}

/// `z4j metrics-token show|rotate`.
pub fn metrics_token(action: Token) -> Result<(), StartError> {
    let loaded = load(Vec::new())?;
    match action {
        Token::Show => match &loaded.settings.metrics_auth_token {
            Some(t) => {
                println!("{t}");
                Ok(())
            }
            None => Err(StartError::new(
                1,
                "no metrics token is configured yet (`z4j serve` mints one unless Z4J_METRICS_PUBLIC is set; or run `z4j metrics-token rotate`)",
            )),
        },
        Token::Rotate => {
            let source = loaded.sources.get("Z4J_METRICS_AUTH_TOKEN").copied();
            if matches!(source, Some(Source::Environment | Source::DotEnv | Source::ConfigEnv)) {
                return Err(StartError::new(
                    2,
                    format!(
                        "Z4J_METRICS_AUTH_TOKEN is set in {}; change it there (rotate only manages ~/.z4j/secret.env)",
                        source.map_or("", Source::label)
                    ),
                ));
            }
            secrets::ensure_home(&loaded.home).map_err(|e| StartError::new(1, e.to_string()))?;
            let path = settings::secret_env_path(&loaded.home);
            let mut entries =
                settings::read_secret_env(&path).map_err(|e| StartError::new(1, e.to_string()))?;
            let token = secrets::random_token(32);
            entries.retain(|(k, _)| k != "Z4J_METRICS_AUTH_TOKEN");
            entries.push(("Z4J_METRICS_AUTH_TOKEN".into(), token.clone()));
            secrets::write_secret_env(&path, &entries).map_err(|e| StartError::new(1, e.to_string()))?;
            println!("{token}");
            eprintln!("z4j: rotated; a running brain keeps the old token until it restarts");
            Ok(())
        }
    }
}

/// `z4j allowed-hosts …`.
pub fn allowed_hosts(action: Hosts) -> Result<(), StartError> {
    let home = settings::home_dir(&LoadInput::from_process(Vec::new()));
    let path = allowed_hosts::path(&home);
    let io = |e: std::io::Error| StartError::new(1, format!("{}: {e}", path.display()));
    let mut hosts = allowed_hosts::read(&path).map_err(io)?;
    match action {
        Hosts::Path => println!("{}", path.display()),
        Hosts::List => hosts.iter().for_each(|h| println!("{h}")),
        Hosts::Add(new) | Hosts::Remove(new) if new.is_empty() => {
            return Err(StartError::new(2, "name at least one host"));
        }
        Hosts::Add(new) => {
            for h in &new {
                settings::check_host_pattern(h)
                    .map_err(|p| StartError::new(2, format!("{h:?} {p}; nothing was changed")))?;
            }
            for h in new {
                let h = h.trim().to_ascii_lowercase();
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            allowed_hosts::write(&home, &path, &hosts).map_err(io)?;
        }
        Hosts::Remove(gone) => {
            let before = hosts.len();
            hosts.retain(|h| !gone.iter().any(|g| g.trim().eq_ignore_ascii_case(h)));
            if hosts.len() == before {
                return Err(StartError::new(
                    2,
                    "none of those hosts is in the list; nothing was changed",
                ));
            }
            allowed_hosts::write(&home, &path, &hosts).map_err(io)?;
        }
    }
    Ok(())
}

/// `z4j mint-scheduler-cert`: prints the two paths and what to do next.
pub fn mint_scheduler_cert(
    name: &str,
    ca_cert: &std::path::Path,
    ca_key: &std::path::Path,
    out_dir: &std::path::Path,
    validity_days: i64,
) -> Result<(), StartError> {
    let (crt, key) =
        crate::scheduler_grpc::pki::mint(name, ca_cert, ca_key, out_dir, validity_days)
            .map_err(|e| StartError::new(e.exit_code, e.message))?;
    println!("certificate: {}", crt.display());
    println!("private key: {}", key.display());
    println!("next: add \"{name}\" to Z4J_SCHEDULER_GRPC_ALLOWED_CNS and restart the brain;");
    println!("      copy both files to the scheduler and set Z4J_SCHEDULER_TLS_CERT / Z4J_SCHEDULER_TLS_KEY");
    println!("      (and Z4J_SCHEDULER_TLS_CA to the CA certificate)");
    Ok(())
}
