//! Rules that involve more than one variable, and the database target.

use super::{SettingError, Settings};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Which database the brain uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// The embedded default (or an explicit `sqlite://` URL).
    Sqlite { path: PathBuf, is_default: bool },
    /// A `postgres://` URL (normalised from the documented
    /// `postgresql+asyncpg://` form).
    Postgres { url: String },
}

impl DatabaseTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            DatabaseTarget::Sqlite { .. } => "sqlite",
            DatabaseTarget::Postgres { .. } => "postgresql",
        }
    }
}

fn err(variable: &str, problem: impl Into<String>) -> SettingError {
    SettingError {
        variable: variable.to_owned(),
        problem: problem.into(),
    }
}

pub(super) fn check(
    mut s: Settings,
    home: &Path,
) -> Result<(Settings, DatabaseTarget), Vec<SettingError>> {
    s.log_level = s.log_level.to_ascii_uppercase();
    s.session_cookie_samesite = s.session_cookie_samesite.to_ascii_lowercase();
    s.registry_backend = s.registry_backend.to_ascii_lowercase();
    if s.embedded_scheduler {
        s.embedded_scheduler_pki_dir = Some(embedded_pki_dir(
            s.embedded_scheduler_pki_dir.as_deref(),
            home,
        ));
    }
    let mut errors = cross_checks(&s);
    let database = match database_target(&s, home) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if let Some(DatabaseTarget::Postgres { url }) = &database {
        if s.require_db_ssl {
            if let Err(problem) = check_db_tls(url) {
                errors.push(err("Z4J_DATABASE_URL", problem));
            }
        }
    }
    if matches!(database, Some(DatabaseTarget::Sqlite { .. })) {
        // LISTEN/NOTIFY does not exist on SQLite.
        s.registry_backend = "local".to_owned();
    }
    match database {
        Some(db) if errors.is_empty() => Ok((s, db)),
        _ => Err(errors),
    }
}

/// The rules that span variables or values a single range cannot express.
fn cross_checks(s: &Settings) -> Vec<SettingError> {
    let mut errors = Vec::new();

    if let Some(url) = &s.public_url {
        if let Err(problem) = check_public_url(url, s.allow_http_public_url) {
            errors.push(err("Z4J_PUBLIC_URL", problem));
        }
    }
    if let Err(problem) = check_bind_host(&s.bind_host) {
        errors.push(err("Z4J_BIND_HOST", problem));
    }
    if s.bootstrap_admin_email.is_some() && s.bootstrap_admin_password.is_none() {
        errors.push(err(
            "Z4J_BOOTSTRAP_ADMIN_PASSWORD",
            "is required when Z4J_BOOTSTRAP_ADMIN_EMAIL is set",
        ));
    }
    for host in &s.allowed_hosts.0 {
        if let Err(problem) = check_host_pattern(host) {
            errors.push(err("Z4J_ALLOWED_HOSTS", format!("{host:?}: {problem}")));
        }
    }
    if s.testing_clock_offset_seconds != 0 && s.environment != "dev" {
        errors.push(err(
            "Z4J_TESTING_CLOCK_OFFSET_SECONDS",
            "is a testing hook and requires Z4J_ENVIRONMENT=dev".to_owned(),
        ));
    }
    if let Some(name) = &s.mutant {
        if let Err(problem) = super::mutant::Mutant::parse(name) {
            errors.push(err("Z4J_MUTANT", problem));
        }
    }
    if s.cors_allow_credentials && s.cors_origins.0.iter().any(|o| o == "*") {
        errors.push(err(
            "Z4J_CORS_ORIGINS",
            "\"*\" cannot be combined with Z4J_CORS_ALLOW_CREDENTIALS=true; list the origins",
        ));
    }
    for (cn, projects) in &s.scheduler_grpc_cn_project_bindings.0 {
        let ok = projects
            .as_array()
            .is_some_and(|a| a.iter().all(serde_json::Value::is_string));
        if !ok {
            errors.push(err(
                "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS",
                format!("the value for {cn:?} must be a JSON array of project slugs"),
            ));
        }
    }
    if s.scheduler_grpc_insecure && s.environment != "dev" {
        errors.push(err(
            "Z4J_SCHEDULER_GRPC_INSECURE",
            "a plaintext scheduler gRPC port is allowed only with Z4J_ENVIRONMENT=dev; configure Z4J_SCHEDULER_GRPC_TLS_CERT, _KEY and _CA",
        ));
    }
    if s.embedded_scheduler {
        errors.extend(embedded_checks(s));
    }
    errors
}

/// The only argv z4j-scheduler 1.13 keeps running under: `serve` takes no
/// options, the other subcommands exit after one run (decision Y9).
const EMBEDDED_ARGV: &[&str] = &["serve"];

/// Where minting would overwrite or re-chmod system files.
const SYSTEM_DIRS: &[&str] = &[
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/proc", "/sys", "/dev", "/root",
];

fn embedded_checks(s: &Settings) -> Vec<SettingError> {
    let mut errors = Vec::new();
    let argv = &s.embedded_scheduler_argv.0;
    if let Some(bad) = argv.iter().find(|a| !EMBEDDED_ARGV.contains(&a.as_str())) {
        errors.push(err(
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
            format!("element {bad:?} is not accepted: z4j-scheduler's `serve` takes no options; use [\"serve\"] and configure the scheduler with Z4J_SCHEDULER_* variables"),
        ));
    } else if argv.as_slice() != ["serve"] {
        errors.push(err(
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
            "must be [\"serve\"], the one subcommand that keeps the scheduler running",
        ));
    }
    if s.embedded_scheduler_python.trim().is_empty() {
        errors.push(err(
            "Z4J_EMBEDDED_SCHEDULER_PYTHON",
            "must name a Python interpreter (a path, or a name on PATH)",
        ));
    }
    if let Some(dir) = &s.embedded_scheduler_pki_dir {
        if dir == "/" {
            errors.push(err(
                "Z4J_EMBEDDED_SCHEDULER_PKI_DIR",
                "must not be the root directory; choose a dedicated directory such as /var/lib/z4j/embedded-pki",
            ));
        } else if let Some(sys) = SYSTEM_DIRS
            .iter()
            .find(|p| dir == *p || dir.starts_with(&format!("{p}/")))
        {
            errors.push(err(
                "Z4J_EMBEDDED_SCHEDULER_PKI_DIR",
                format!("{dir} is under the system directory {sys}; the minted files would overwrite or re-chmod it; choose a dedicated directory such as /var/lib/z4j/embedded-pki"),
            ));
        }
    }
    errors
}

/// The PKI directory as an absolute, lexically normalised path: the
/// configured one, else `<home>/embedded-pki`.
fn embedded_pki_dir(configured: Option<&str>, home: &Path) -> String {
    let raw = configured
        .filter(|d| !d.trim().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("embedded-pki"));
    let absolute = if raw.is_absolute() {
        raw
    } else {
        std::env::current_dir().unwrap_or_default().join(raw)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.display().to_string()
}

fn check_public_url(url: &str, allow_http: bool) -> Result<(), String> {
    if url.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(
            "must use https:// (set Z4J_ALLOW_HTTP_PUBLIC_URL=true to permit http:// for tests)"
                .into(),
        ),
        other => {
            return Err(format!(
                "scheme {other:?} is not accepted; use https:// or http://"
            ))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain user information (user:password@)".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(())
}

fn check_bind_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() || is_hostname(host) {
        Ok(())
    } else {
        Err(format!("{host:?} is neither an IP address nor a host name"))
    }
}

fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An allowed-hosts entry: a host name, `*.domain`, an IP, optionally `:port`.
pub fn check_host_pattern(entry: &str) -> Result<(), String> {
    let e = entry.trim();
    if e == "*" {
        return Ok(());
    }
    if e.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return Ok(());
    }
    let (host, port) = match e.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (e, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("the port must be 1-65535".into());
        }
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    if host.parse::<IpAddr>().is_ok() || is_hostname(host) {
        Ok(())
    } else {
        Err("is not a host name, *.domain, or IP address".into())
    }
}

fn database_target(s: &Settings, home: &Path) -> Result<DatabaseTarget, SettingError> {
    let parts = [
        &s.database_host,
        &s.database_port,
        &s.database_user,
        &s.database_password,
        &s.database_name,
    ];
    let given = parts.iter().filter(|p| p.is_some()).count();
    let url = match (&s.database_url, given) {
        (Some(url), _) => url.clone(),
        (None, 0) => {
            return Ok(DatabaseTarget::Sqlite {
                path: home.join("z4j.db"),
                is_default: true,
            })
        }
        (None, 5) => compose_url(s)?,
        (None, _) => {
            return Err(err(
                "Z4J_DATABASE_HOST",
                "Z4J_DATABASE_HOST, _PORT, _USER, _PASSWORD and _NAME must be set together",
            ))
        }
    };
    normalise_url(&url)
}

fn compose_url(s: &Settings) -> Result<String, SettingError> {
    let get = |v: &Option<String>| v.clone().unwrap_or_default();
    let port = get(&s.database_port);
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(err("Z4J_DATABASE_PORT", "must be a port number 1-65535"));
    }
    let host = get(&s.database_host);
    if host.chars().any(|c| "/@?#[]".contains(c) || c.is_control()) {
        return Err(err(
            "Z4J_DATABASE_HOST",
            "must not contain / @ ? # [ ] or control characters",
        ));
    }
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    Ok(format!(
        "postgres://{}:{}@{}:{}/{}",
        enc(&get(&s.database_user)),
        enc(&get(&s.database_password)),
        host,
        port,
        enc(&get(&s.database_name))
    ))
}

/// Accepts `postgresql+asyncpg://`, `postgresql://`, `postgres://`,
/// `sqlite+aiosqlite:///path` and `sqlite:///path`.
pub fn normalise_url(url: &str) -> Result<DatabaseTarget, SettingError> {
    let bad = |problem: &str| err("Z4J_DATABASE_URL", problem);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("is not a URL; expected postgresql+asyncpg://user:pw@host/db"))?;
    match scheme {
        "postgresql+asyncpg" | "postgresql" | "postgres" => {
            let normalised = format!("postgres://{rest}");
            url::Url::parse(&normalised)
                .map_err(|e| bad(&format!("is not a valid PostgreSQL URL ({e})")))?;
            Ok(DatabaseTarget::Postgres { url: normalised })
        }
        "sqlite+aiosqlite" | "sqlite" => {
            let path = rest.strip_prefix('/').unwrap_or(rest);
            if path.is_empty() {
                return Err(bad(
                    "names no SQLite file; expected sqlite:///path/to/z4j.db",
                ));
            }
            Ok(DatabaseTarget::Sqlite {
                path: PathBuf::from(format!("/{}", path.trim_start_matches('/'))),
                is_default: false,
            })
        }
        // The URL is a secret (it may hold a password): the part before
        // "://" is named only when it is a scheme's syntax (RFC 3986 3.1),
        // so a mistyped URL never prints its credentials.
        other if is_scheme(other) => Err(bad(&format!(
            "scheme {other:?} is not supported; use postgresql+asyncpg:// (or sqlite:///path)"
        ))),
        _ => Err(bad(
            "does not start with a URL scheme (a letter, then letters, digits, + - .) before ://; \
             use postgresql+asyncpg:// (or sqlite:///path)",
        )),
    }
}

/// RFC 3986 scheme syntax, at most 32 characters.
fn is_scheme(s: &str) -> bool {
    s.len() <= 32
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `Z4J_REQUIRE_DB_SSL`: TLS must be required unless the host is loopback.
fn check_db_tls(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().unwrap_or("");
    let host_param = parsed
        .query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned());
    let effective = host_param.as_deref().unwrap_or(host);
    if is_loopback(effective) {
        return Ok(());
    }
    let modes: Vec<String> = parsed
        .query_pairs()
        .filter(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned())
        .collect();
    match modes.as_slice() {
        [m] if matches!(m.as_str(), "require" | "verify-ca" | "verify-full") => Ok(()),
        _ => Err(format!(
            "must require TLS for the non-loopback host {effective:?}: add exactly one ?sslmode=require (or verify-ca / verify-full), or set Z4J_REQUIRE_DB_SSL=false"
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.starts_with('/') // a Unix socket directory
        || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_rules() {
        assert!(check_public_url("https://z4j.example.com", false).is_ok());
        assert!(check_public_url("http://z4j.example.com", false).is_err());
        assert!(check_public_url("http://z4j.example.com", true).is_ok());
        assert!(check_public_url("https://u:p@z4j.example.com", false).is_err());
        assert!(check_public_url("https://z4j .example.com", false).is_err());
        assert!(check_public_url("ftp://z4j.example.com", false).is_err());
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            normalise_url("postgresql+asyncpg://u:p@db/z4j").unwrap(),
            DatabaseTarget::Postgres {
                url: "postgres://u:p@db/z4j".into()
            }
        );
        assert!(matches!(
            normalise_url("sqlite+aiosqlite:////tmp/x.db").unwrap(),
            DatabaseTarget::Sqlite { .. }
        ));
        assert!(normalise_url("mysql://x").is_err());
        assert!(normalise_url("nonsense").is_err());
    }

    #[test]
    fn an_unsupported_scheme_is_named_but_never_other_text_before_it() {
        let problem = |url: &str| match normalise_url(url) {
            Err(e) => e.problem,
            Ok(t) => panic!("{url} accepted as {t:?}"),
        };
        assert!(problem("mysql://u:p@db/z4j").contains("\"mysql\""));
        assert!(problem("mongodb+srv://x").contains("\"mongodb+srv\""));
        // A password typed before the "://" (the fuzzer's finding, with a
        // secret's text in the part taken for the scheme) is not printed.
        for url in [
            "postgresql:u:s3cret-pw@db//x://y",
            "u:s3cret-pw@db://z4j",
            "s3cret pw://x",
            "\0s3cret\u{1F511}pw://x",
            "9s3cretpw://x",
        ] {
            let p = problem(url);
            assert!(!p.contains("s3cret"), "{url}: {p}");
            assert!(p.contains("URL scheme"), "{p}");
        }
        let long = format!("{}://x", "a".repeat(33));
        assert!(!problem(&long).contains("aaaa"));
    }

    #[test]
    fn db_tls_required_except_loopback() {
        assert!(check_db_tls("postgres://u@127.0.0.1/db").is_ok());
        assert!(check_db_tls("postgres://u@localhost/db").is_ok());
        assert!(check_db_tls("postgres://u@[::1]/db").is_ok());
        assert!(check_db_tls("postgres://u@db.internal/db").is_err());
        assert!(check_db_tls("postgres://u@db.internal/db?sslmode=require").is_ok());
        assert!(check_db_tls("postgres://u@db.internal/db?sslmode=disable").is_err());
        assert!(
            check_db_tls("postgres://u@db.internal/db?sslmode=require&sslmode=require").is_err()
        );
    }

    #[test]
    fn host_patterns() {
        for ok in [
            "example.com",
            "*.example.com",
            "10.0.0.1",
            "[::1]",
            "localhost:7700",
            "*",
        ] {
            assert!(check_host_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["bad host/x", "exa mple.com", "host:0", "host:99999", ""] {
            assert!(check_host_pattern(bad).is_err(), "{bad}");
        }
    }
}
