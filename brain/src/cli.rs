//! The `z4j` command line. Arguments only: each subcommand is carried out by `ops`.

use crate::ops;
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
    /// Mint a client certificate for a z4j-scheduler, signed by your CA.
    MintSchedulerCert {
        /// The scheduler's name: the certificate's CN and DNS SAN, and the
        /// file names (`<name>.crt`, `<name>.key`).
        #[arg(long)]
        name: String,
        /// The CA certificate (PEM).
        #[arg(long)]
        ca_cert: std::path::PathBuf,
        /// The CA's private key (PEM, unencrypted).
        #[arg(long)]
        ca_key: std::path::PathBuf,
        /// Where the two files are written (created 0700).
        #[arg(long)]
        out_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 365)]
        validity_days: i64,
    },
    /// Create a global admin (the first one closes setup, as the setup URL
    /// would). Audited as done from the command line.
    Createsuperuser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a user's password: their sessions end, a login lock is lifted.
    Changepassword {
        /// The user's email address.
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Clear a user's second factor, recovery codes and trusted devices
    /// (a lost phone).
    ResetMfa {
        /// The user's email address.
        email: String,
        /// Required: the user's second factor is removed.
        #[arg(long)]
        confirm: bool,
    },
    /// Discard the pending setup URL so the next `serve` prints a new one;
    /// refused once any user exists.
    ResetSetup {
        /// Required: the pending setup URL stops working.
        #[arg(long)]
        force: bool,
    },
    /// Copy the database to one file while the brain keeps serving (SQLite
    /// `VACUUM INTO`; PostgreSQL `pg_dump`, custom format).
    Backup {
        #[arg(long, short)]
        output: std::path::PathBuf,
    },
    /// Replace the database with a backup: checked first (integrity, schema,
    /// audit chain), the old SQLite file kept aside; refused while a brain
    /// serves the database.
    Restore {
        /// A file written by `z4j backup`.
        source: std::path::PathBuf,
        /// Required: acknowledges that every brain is stopped.
        #[arg(long)]
        force: bool,
    },
    /// Print the version.
    Version,
}

/// Where a new password comes from: exactly one of the two.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct PasswordArgs {
    /// Read the password from the first line of stdin (recommended).
    #[arg(long)]
    password_stdin: bool,
    /// The password on the command line (visible in the process list).
    #[arg(long)]
    password: Option<String>,
}

impl PasswordArgs {
    fn source(self) -> ops::Password {
        match self.password {
            Some(p) => ops::Password::Given(p),
            None => ops::Password::Stdin,
        }
    }
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

/// Runs a command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve { host, port } => ops::serve(host, port),
        Command::Migrate => ops::migrate(),
        Command::Audit {
            action: AuditAction::Verify,
        } => ops::audit_verify(),
        Command::Audit {
            action: AuditAction::Reseal { confirm },
        } => ops::audit_reseal(confirm),
        Command::MetricsToken { action, rotate } => ops::metrics_token(match (action, rotate) {
            (TokenAction::Rotate, _) | (_, true) => ops::Token::Rotate,
            (TokenAction::Show, false) => ops::Token::Show,
        }),
        Command::AllowedHosts { action } => ops::allowed_hosts(match action {
            HostsAction::List => ops::Hosts::List,
            HostsAction::Add { hosts } => ops::Hosts::Add(hosts),
            HostsAction::Remove { hosts } => ops::Hosts::Remove(hosts),
            HostsAction::Path => ops::Hosts::Path,
        }),
        Command::Config {
            action: ConfigAction::Show { reveal_secrets },
        } => ops::config_show(reveal_secrets),
        Command::MintSchedulerCert {
            name,
            ca_cert,
            ca_key,
            out_dir,
            validity_days,
        } => ops::mint_scheduler_cert(&name, &ca_cert, &ca_key, &out_dir, validity_days),
        Command::Createsuperuser {
            email,
            display_name,
            password,
        } => ops::createsuperuser(&email, display_name, password.source()),
        Command::Changepassword { email, password } => {
            ops::changepassword(&email, password.source())
        }
        Command::ResetMfa { email, confirm } => ops::reset_mfa(&email, confirm),
        Command::ResetSetup { force } => ops::reset_setup(force),
        Command::Backup { output } => ops::backup(&output),
        Command::Restore { source, force } => ops::restore(&source, force),
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
