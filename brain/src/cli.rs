//! The `z4j` command line.

use crate::bootstrap::secrets;
use crate::server::{self, StartError};
use crate::settings::{self, allowed_hosts, LoadInput, Loaded, Source};
use clap::{Parser, Subcommand};

pub const VERSION_LINE: &str = concat!("1.13.0 (z4j-rs ", env!("CARGO_PKG_VERSION"), ")");

#[derive(Parser, Debug)]
#[command(name = "z4j", version = VERSION_LINE, about = "z4j brain: the control plane of the z4j task-queue monitor")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the brain (embedded SQLite unless Z4J_DATABASE_URL is set).
    Serve {
        /// Bind host (overrides Z4J_BIND_HOST).
        #[arg(long)]
        host: Option<String>,
        /// Bind port (overrides Z4J_BIND_PORT).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print or rotate the /metrics bearer token.
    MetricsToken {
        #[arg(value_enum, default_value = "show")]
        action: TokenAction,
        /// Same as the `rotate` action.
        #[arg(long)]
        rotate: bool,
    },
    /// Manage the persisted Host-header allow-list (~/.z4j/allowed-hosts).
    AllowedHosts {
        #[command(subcommand)]
        action: HostsAction,
    },
    /// The HMAC-chained audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Inspect the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print the version.
    Version,
}

#[derive(clap::ValueEnum, Clone, Debug)]
pub enum TokenAction {
    Show,
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum HostsAction {
    List,
    Add { hosts: Vec<String> },
    Remove { hosts: Vec<String> },
    Path,
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Walk the whole chain; exit 1 and name the first broken row if any.
    Verify,
    /// Re-sign the chain state on the rows the table holds now, when it no
    /// longer verifies (audited actions are refused until then); recorded
    /// as an `audit.resealed` row. Rows are not changed.
    Reseal {
        /// Required: the state is overwritten.
        #[arg(long)]
        confirm: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Every variable with its effective value (secrets masked) and source.
    Show {
        #[arg(long)]
        reveal_secrets: bool,
    },
}

fn load(cli_overrides: Vec<(&'static str, String)>) -> Result<Loaded, StartError> {
    load_from(&LoadInput::from_process(cli_overrides))
}

fn load_from(input: &LoadInput) -> Result<Loaded, StartError> {
    let loaded = settings::load(input).map_err(|e| StartError::new(1, e.to_string()))?;
    for w in &loaded.warnings {
        eprintln!("z4j: warning: {w}");
    }
    Ok(loaded)
}

/// Runs a command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve { host, port } => serve(host, port),
        Command::Migrate => migrate(),
        Command::Audit {
            action: AuditAction::Verify,
        } => audit_verify(),
        Command::Audit {
            action: AuditAction::Reseal { confirm },
        } => audit_reseal(confirm),
        Command::MetricsToken { action, rotate } => {
            metrics_token(if rotate { TokenAction::Rotate } else { action })
        }
        Command::AllowedHosts { action } => allowed_hosts(action),
        Command::Config {
            action: ConfigAction::Show { reveal_secrets },
        } => load(Vec::new()).map(|l| print!("{}", l.render(reveal_secrets))),
        Command::Version => {
            println!("{VERSION_LINE}");
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("z4j: {}", e.message);
            e.exit_code
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::new(1, format!("cannot start the async runtime: {e}")))
}

fn serve(host: Option<String>, port: Option<u16>) -> Result<(), StartError> {
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

fn migrate() -> Result<(), StartError> {
    let loaded = load(Vec::new())?;
    ensure_default_home(&loaded)?;
    runtime()?.block_on(async {
        let db = crate::store::connect(&loaded.database, &loaded.settings)
            .await
            .map_err(|e| StartError::new(1, e.to_string()))?;
        crate::store::migrate(&db)
            .await
            .map_err(|e| StartError::new(1, format!("migration failed: {e}")))?;
        println!("z4j: the {} schema is up to date", db.kind());
        db.close().await;
        Ok(())
    })
}

fn audit_verify() -> Result<(), StartError> {
    let loaded = load(Vec::new())?;
    runtime()?.block_on(async {
        let db = crate::store::connect(&loaded.database, &loaded.settings)
            .await
            .map_err(|e| StartError::new(1, e.to_string()))?;
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

fn audit_reseal(confirm: bool) -> Result<(), StartError> {
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
        let db = crate::store::connect(&loaded.database, &loaded.settings)
            .await
            .map_err(|e| StartError::new(1, e.to_string()))?;
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

fn metrics_token(action: TokenAction) -> Result<(), StartError> {
    let loaded = load(Vec::new())?;
    match action {
        TokenAction::Show => match &loaded.settings.metrics_auth_token {
            Some(t) => {
                println!("{t}");
                Ok(())
            }
            None => Err(StartError::new(
                1,
                "no metrics token is configured yet (`z4j serve` mints one unless Z4J_METRICS_PUBLIC is set; or run `z4j metrics-token rotate`)",
            )),
        },
        TokenAction::Rotate => {
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

fn allowed_hosts(action: HostsAction) -> Result<(), StartError> {
    let home = settings::home_dir(&LoadInput::from_process(Vec::new()));
    let path = allowed_hosts::path(&home);
    let io = |e: std::io::Error| StartError::new(1, format!("{}: {e}", path.display()));
    let mut hosts = allowed_hosts::read(&path).map_err(io)?;
    match action {
        HostsAction::Path => println!("{}", path.display()),
        HostsAction::List => hosts.iter().for_each(|h| println!("{h}")),
        HostsAction::Add { hosts: new } | HostsAction::Remove { hosts: new } if new.is_empty() => {
            return Err(StartError::new(2, "name at least one host"));
        }
        HostsAction::Add { hosts: new } => {
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
        HostsAction::Remove { hosts: gone } => {
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
