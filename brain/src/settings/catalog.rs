//! Every brain-side `Z4J_*` variable: field, type, default, accepted range,
//! whether it is a secret, and its one-line doc. One table generates both the
//! typed [`Settings`] struct and the [`CATALOG`] that `config show` and the
//! unknown-variable check read, so the two cannot drift apart.
//!
//! Defaults and ranges follow `seed/environment-variables.txt`; where it is
//! silent, the reference's ranges from `specs/http-api.md` section 7.

use super::value::{Check, Cidrs, CommaList, JsonList, JsonObject, SettingValue};

/// One documented variable.
#[derive(Debug, Clone, Copy)]
pub struct VarSpec {
    pub env: &'static str,
    pub section: &'static str,
    pub default: &'static str,
    pub check: Check,
    pub secret: bool,
    pub doc: &'static str,
}

macro_rules! settings_table {
    ($( [$section:literal] $( $field:ident : $ty:ty = $env:literal, $default:literal, $check:expr, $secret:literal, $doc:literal; )* )*) => {
        /// The effective configuration, built once at start-up.
        #[derive(Clone)]
        pub struct Settings {
            $( $( #[doc = $doc] pub $field: $ty, )* )*
        }

        /// Every field, with the catalog's secrets shown as `<redacted>`
        /// (set) or `None` (unset), so a logged or panicking `Settings`
        /// never carries a secret.
        impl std::fmt::Debug for Settings {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct("Settings");
                $( $(
                    if $secret {
                        let shown = if SettingValue::render(&self.$field).is_empty() { "None" } else { "<redacted>" };
                        d.field(stringify!($field), &format_args!("{shown}"));
                    } else {
                        d.field(stringify!($field), &self.$field);
                    }
                )* )*
                d.finish()
            }
        }

        pub static CATALOG: &[VarSpec] = &[
            $( $( VarSpec { env: $env, section: $section, default: $default, check: $check, secret: $secret, doc: $doc }, )* )*
        ];

        impl Settings {
            /// Parses every variable from `lookup` (the merged raw sources;
            /// `None` = use the default); collects every error.
            pub(crate) fn parse_all(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Vec<(&'static str, String, String)>> {
                let mut errors = Vec::new();
                $( $(
                    let raw = lookup($env).unwrap_or_else(|| $default.to_owned());
                    let $field: Option<$ty> = match <$ty as SettingValue>::parse_setting(&raw, &$check) {
                        Ok(v) => Some(v),
                        Err(e) => { errors.push(($env, raw.clone(), e)); None }
                    };
                )* )*
                #[allow(clippy::type_complexity)]
                match ($( $( $field, )* )*) {
                    ($( $( Some($field), )* )*) => Ok(Settings { $( $( $field, )* )* }),
                    _ => Err(errors),
                }
            }

            /// Every effective value rendered as env-file text.
            pub fn render_values(&self) -> std::collections::BTreeMap<&'static str, String> {
                let mut out = std::collections::BTreeMap::new();
                $( $( out.insert($env, SettingValue::render(&self.$field)); )* )*
                out
            }
        }
    };
}

const MAX_SECS: i64 = 315_360_000; // ten years

settings_table! {
    ["Required and rotation"]
    database_url: Option<String> = "Z4J_DATABASE_URL", "", Check::None, true, "PostgreSQL connection string (postgresql+asyncpg://user:pw@host/db).";
    secret: Option<String> = "Z4J_SECRET", "", Check::EntryMinBytes(32), true, "Master HMAC signing key: per-project frame HMAC, audit-log row HMAC, token hashes. At least 32 bytes.";
    session_secret: Option<String> = "Z4J_SESSION_SECRET", "", Check::EntryMinBytes(32), true, "Independent secret for user-session cookies. Rotating it invalidates active sessions.";
    public_url: Option<String> = "Z4J_PUBLIC_URL", "", Check::None, false, "Full externally reachable base URL with scheme. No whitespace, no userinfo, http(s) only.";
    previous_secrets: CommaList = "Z4J_PREVIOUS_SECRETS", "", Check::EntryMinBytes(32), true, "Comma-separated previous Z4J_SECRET values still accepted while verifying during rotation.";
    previous_session_secrets: CommaList = "Z4J_PREVIOUS_SESSION_SECRETS", "", Check::EntryMinBytes(32), true, "Comma-separated previous session secrets still accepted while verifying older cookies.";
    audit_chain_secret: Option<String> = "Z4J_AUDIT_CHAIN_SECRET", "", Check::EntryMinBytes(32), true, "Key of the HMAC-chained audit log (minted with the other secrets on first boot).";
    audit_chain_previous_secrets: CommaList = "Z4J_AUDIT_CHAIN_PREVIOUS_SECRETS", "", Check::EntryMinBytes(32), true, "Previous audit chain keys still accepted while verifying older rows.";

    ["Database"]
    database_statement_cache_size: i64 = "Z4J_DATABASE_STATEMENT_CACHE_SIZE", "50", Check::Int(0, 10_000), false, "Per-connection prepared-statement cache cap (PostgreSQL). 0 disables.";
    database_max_inactive_connection_lifetime_seconds: f64 = "Z4J_DATABASE_MAX_INACTIVE_CONNECTION_LIFETIME_SECONDS", "60", Check::Float(1.0, 3600.0), false, "Seconds before a pooled connection is closed and reopened.";
    auto_migrate: bool = "Z4J_AUTO_MIGRATE", "true", Check::None, false, "Run schema migrations on brain boot. Set to false when migrations run as a separate step.";
    require_db_ssl: bool = "Z4J_REQUIRE_DB_SSL", "true", Check::None, false, "Refuse PostgreSQL URLs that do not require TLS (relaxed for loopback hosts).";
    db_statement_timeout_ms: i64 = "Z4J_DB_STATEMENT_TIMEOUT_MS", "10000", Check::Int(100, 600_000), false, "PostgreSQL statement_timeout (milliseconds). Caps any single query.";
    db_lock_timeout_ms: i64 = "Z4J_DB_LOCK_TIMEOUT_MS", "3000", Check::Int(100, 600_000), false, "PostgreSQL lock_timeout (milliseconds).";
    db_idle_in_tx_timeout_ms: i64 = "Z4J_DB_IDLE_IN_TX_TIMEOUT_MS", "30000", Check::Int(100, 600_000), false, "PostgreSQL idle_in_transaction_session_timeout (milliseconds).";
    asyncpg_connect_timeout: f64 = "Z4J_ASYNCPG_CONNECT_TIMEOUT", "10.0", Check::Float(1.0, 60.0), false, "Seconds before a PostgreSQL connect attempt times out.";
    asyncpg_close_timeout: f64 = "Z4J_ASYNCPG_CLOSE_TIMEOUT", "5.0", Check::Float(1.0, 30.0), false, "Seconds before a PostgreSQL close call times out.";
    wal_checkpoint_interval_seconds: i64 = "Z4J_WAL_CHECKPOINT_INTERVAL_SECONDS", "300", Check::Int(60, 86_400), false, "SQLite-only PRAGMA wal_checkpoint(TRUNCATE) cadence. Ignored on PostgreSQL.";
    database_pool_size: i64 = "Z4J_DATABASE_POOL_SIZE", "20", Check::Int(1, 1000), false, "Pooled connections kept per process.";
    database_max_overflow: i64 = "Z4J_DATABASE_MAX_OVERFLOW", "10", Check::Int(0, 1000), false, "Extra connections allowed above the pool size under load.";
    database_host: Option<String> = "Z4J_DATABASE_HOST", "", Check::None, false, "PostgreSQL host, when not using Z4J_DATABASE_URL (all five parts required).";
    database_port: Option<String> = "Z4J_DATABASE_PORT", "", Check::None, false, "PostgreSQL port (1-65535), with the other Z4J_DATABASE_* parts.";
    database_user: Option<String> = "Z4J_DATABASE_USER", "", Check::None, false, "PostgreSQL user, with the other Z4J_DATABASE_* parts.";
    database_password: Option<String> = "Z4J_DATABASE_PASSWORD", "", Check::None, true, "PostgreSQL password, with the other Z4J_DATABASE_* parts.";
    database_name: Option<String> = "Z4J_DATABASE_NAME", "", Check::None, false, "PostgreSQL database name, with the other Z4J_DATABASE_* parts.";

    ["Passwords"]
    password_min_length: i64 = "Z4J_PASSWORD_MIN_LENGTH", "8", Check::Int(8, 128), false, "Minimum password length.";
    argon2_time_cost: i64 = "Z4J_ARGON2_TIME_COST", "3", Check::Int(1, 10), false, "argon2id time cost.";
    argon2_memory_cost: i64 = "Z4J_ARGON2_MEMORY_COST", "65536", Check::Int(8192, 4_194_304), false, "argon2id memory (KiB, 64 MiB default).";
    argon2_parallelism: i64 = "Z4J_ARGON2_PARALLELISM", "4", Check::Int(1, 16), false, "argon2id threads.";

    ["Sessions and login"]
    session_absolute_lifetime_seconds: i64 = "Z4J_SESSION_ABSOLUTE_LIFETIME_SECONDS", "604800", Check::Int(60, MAX_SECS), false, "Hard cap on a session's age (default 7 days).";
    session_idle_timeout_seconds: i64 = "Z4J_SESSION_IDLE_TIMEOUT_SECONDS", "1800", Check::Int(60, MAX_SECS), false, "Sliding idle timeout (default 30 minutes).";
    session_cookie_samesite: String = "Z4J_SESSION_COOKIE_SAMESITE", "lax", Check::OneOf(&["lax", "strict"]), false, "SameSite attribute on the session cookie. lax or strict.";
    session_pin_user_agent: bool = "Z4J_SESSION_PIN_USER_AGENT", "false", Check::None, false, "Enforce the User-Agent seen at session issue on every later request.";
    session_remember_me_lifetime_seconds: i64 = "Z4J_SESSION_REMEMBER_ME_LIFETIME_SECONDS", "2592000", Check::Int(60, MAX_SECS), false, "Lifetime of a remember-me session (default 30 days).";
    login_lockout_threshold: i64 = "Z4J_LOGIN_LOCKOUT_THRESHOLD", "10", Check::Int(3, 100), false, "Failed login attempts on a single account before lockout.";
    login_lockout_duration_seconds: i64 = "Z4J_LOGIN_LOCKOUT_DURATION_SECONDS", "900", Check::Int(60, 86_400), false, "Lockout duration after the threshold is reached.";
    login_backoff_base_seconds: f64 = "Z4J_LOGIN_BACKOFF_BASE_SECONDS", "0.5", Check::Float(0.0, 10.0), false, "Base per-failure backoff applied to the login response.";
    login_backoff_max_seconds: f64 = "Z4J_LOGIN_BACKOFF_MAX_SECONDS", "5.0", Check::Float(0.0, 60.0), false, "Cap on the per-failure backoff.";
    login_min_duration_ms: i64 = "Z4J_LOGIN_MIN_DURATION_MS", "300", Check::Int(0, 2000), false, "Minimum total response time for /auth/login, success or failure.";
    log_login_email: bool = "Z4J_LOG_LOGIN_EMAIL", "false", Check::None, false, "Log the attempted email on failed logins (PII).";

    ["Reconciliation"]
    reconciliation_sweep_seconds: i64 = "Z4J_RECONCILIATION_SWEEP_SECONDS", "300", Check::Int(30, 3600), false, "Seconds between reconciliation passes over in-flight tasks.";
    reconciliation_stale_threshold_seconds: i64 = "Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS", "900", Check::Int(60, 86_400), false, "Minimum age before a started task is eligible for reconciliation.";

    ["Retention"]
    event_retention_days: i64 = "Z4J_EVENT_RETENTION_DAYS", "30", Check::Int(1, 3650), false, "Days raw events rows live before the retention worker drops them.";
    audit_retention_days: i64 = "Z4J_AUDIT_RETENTION_DAYS", "90", Check::Int(1, 36_500), false, "Days audit_log rows live before the retention worker prunes them.";
    audit_retention_sweep_interval_seconds: i64 = "Z4J_AUDIT_RETENTION_SWEEP_INTERVAL_SECONDS", "3600", Check::Int(60, 86_400), false, "Seconds between audit retention sweeps.";
    audit_retention_sweep_batch_size: i64 = "Z4J_AUDIT_RETENTION_SWEEP_BATCH_SIZE", "5000", Check::Int(100, 100_000), false, "Rows pruned per database round-trip inside one sweep pass.";
    audit_chain_verify_enabled: bool = "Z4J_AUDIT_CHAIN_VERIFY_ENABLED", "false", Check::None, false, "Walk the whole audit chain on a schedule (a reference variable, not in the seed): first at start, then every Z4J_AUDIT_CHAIN_VERIFY_INTERVAL_SECONDS, one replica.";
    audit_chain_verify_interval_seconds: i64 = "Z4J_AUDIT_CHAIN_VERIFY_INTERVAL_SECONDS", "86400", Check::Int(900, 604_800), false, "Seconds between scheduled audit chain verifications (a reference variable, not in the seed).";
    testing_clock_offset_seconds: i64 = "Z4J_TESTING_CLOCK_OFFSET_SECONDS", "0", Check::Int(-315_360_000, 315_360_000), false, "z4j-rs testing hook, dev posture only: shift the brain's clock by this many seconds.";
    mutant: Option<String> = "Z4J_MUTANT", "", Check::None, false, "z4j-rs testing hook for mutation testing (debug builds or --features mutants only): break one named behaviour on purpose.";
    audit_retention_sweep_max_per_pass: i64 = "Z4J_AUDIT_RETENTION_SWEEP_MAX_PER_PASS", "200000", Check::Int(1000, 10_000_000), false, "Hard cap on rows deleted in a single sweep pass.";

    ["Metrics"]
    metrics_auth_token: Option<String> = "Z4J_METRICS_AUTH_TOKEN", "", Check::None, true, "Bearer token required by /metrics; auto-minted into secret.env unless Z4J_METRICS_PUBLIC.";
    metrics_public: bool = "Z4J_METRICS_PUBLIC", "false", Check::None, false, "Leave /metrics open (only behind a firewall or authenticating proxy).";
    metrics_enabled: bool = "Z4J_METRICS_ENABLED", "true", Check::None, false, "Set to false to skip mounting the /metrics route entirely.";

    ["Bootstrap"]
    bootstrap_admin_email: Option<String> = "Z4J_BOOTSTRAP_ADMIN_EMAIL", "", Check::None, false, "Skip the setup URL and provision an admin with this email. Read once at boot.";
    bootstrap_admin_password: Option<String> = "Z4J_BOOTSTRAP_ADMIN_PASSWORD", "", Check::None, true, "Required with Z4J_BOOTSTRAP_ADMIN_EMAIL. Removed from the process environment after use.";
    bootstrap_admin_display_name: Option<String> = "Z4J_BOOTSTRAP_ADMIN_DISPLAY_NAME", "", Check::MaxLen(200), false, "Display name of the bootstrap admin.";
    first_boot_token_ttl_seconds: i64 = "Z4J_FIRST_BOOT_TOKEN_TTL_SECONDS", "900", Check::Int(60, 86_400), false, "Validity window for the one-time setup token (default 15 minutes).";
    first_boot_attempts_per_ip: i64 = "Z4J_FIRST_BOOT_ATTEMPTS_PER_IP", "30", Check::Int(1, 100), false, "Sliding-window cap on setup-token verification attempts per IP per 15 minutes.";

    ["MFA"]
    mfa_enforce_for_admins: bool = "Z4J_MFA_ENFORCE_FOR_ADMINS", "false", Check::None, false, "Block sign-in for un-enrolled admins past the grace window.";
    mfa_enforce_for_all: bool = "Z4J_MFA_ENFORCE_FOR_ALL", "false", Check::None, false, "Same for every user.";
    mfa_enrollment_grace_days: i64 = "Z4J_MFA_ENROLLMENT_GRACE_DAYS", "7", Check::Int(1, 90), false, "Days an enforcement-targeted user has to enroll. Range 1..90.";
    mfa_recovery_code_count: i64 = "Z4J_MFA_RECOVERY_CODE_COUNT", "10", Check::Int(5, 50), false, "Single-use recovery codes minted at enrollment. Range 5..50.";
    mfa_verification_ttl_seconds: i64 = "Z4J_MFA_VERIFICATION_TTL_SECONDS", "900", Check::Int(60, 86_400), false, "How long a successful MFA verify counts as fresh for sensitive actions.";
    mfa_remember_device_days: i64 = "Z4J_MFA_REMEMBER_DEVICE_DAYS", "30", Check::Int(1, 90), false, "Lifetime of the z4j_mfa_trust cookie. Hard upper bound 90.";
    mfa_verification_rate_per_min: i64 = "Z4J_MFA_VERIFICATION_RATE_PER_MIN", "10", Check::Int(1, 300), false, "Per-IP cap on /auth/mfa/verify attempts per minute.";
    mfa_lockout_threshold: i64 = "Z4J_MFA_LOCKOUT_THRESHOLD", "5", Check::Int(1, 100), false, "Wrong MFA codes on one account before it is locked.";
    mfa_lockout_duration_seconds: i64 = "Z4J_MFA_LOCKOUT_DURATION_SECONDS", "900", Check::Int(60, 86_400), false, "MFA account lock duration.";
    mfa_trusted_devices_max_per_user: i64 = "Z4J_MFA_TRUSTED_DEVICES_MAX_PER_USER", "20", Check::Int(1, 1000), false, "Remembered devices kept per user.";

    ["Notifications"]
    notifications_webhook_allow_http: bool = "Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP", "false", Check::None, false, "Allow http:// webhook URLs (refused at configuration and at dispatch otherwise).";
    notifications_webhook_allow_private: bool = "Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE", "false", Check::None, false, "z4j-rs: allow webhook targets that resolve to loopback, private or link-local addresses (refused by default against SSRF).";
    notifications_email_allow_private: bool = "Z4J_NOTIFICATIONS_EMAIL_ALLOW_PRIVATE", "false", Check::None, false, "z4j-rs: allow e-mail channels whose SMTP server resolves to loopback, private or link-local addresses (refused by default against SSRF).";

    ["Agent health"]
    agent_offline_timeout_seconds: i64 = "Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS", "30", Check::Int(1, 3600), false, "Heartbeats older than this mark the agent offline.";
    agent_health_sweep_seconds: i64 = "Z4J_AGENT_HEALTH_SWEEP_SECONDS", "10", Check::Int(1, 300), false, "Cadence for the agent health-check sweep.";
    agent_stale_prune_days: i64 = "Z4J_AGENT_STALE_PRUNE_DAYS", "30", Check::Int(0, 3650), false, "Agents offline longer than this are soft-removed (0 disables).";
    agent_offline_alert_grace_seconds: i64 = "Z4J_AGENT_OFFLINE_ALERT_GRACE_SECONDS", "60", Check::Int(0, 86_400), false, "Extra silence after the offline timeout before an agent.offline notification.";

    ["WebSocket"]
    ws_idle_timeout_seconds: i64 = "Z4J_WS_IDLE_TIMEOUT_SECONDS", "90", Check::Int(15, 3600), false, "Per-connection idle timeout for agent and dashboard WebSockets.";
    ws_ingest_queue_maxsize: i64 = "Z4J_WS_INGEST_QUEUE_MAXSIZE", "2000", Check::Int(16, 50_000), false, "Bounded per-connection ingest queue.";
    ws_max_frame_bytes: i64 = "Z4J_WS_MAX_FRAME_BYTES", "1048576", Check::Int(8192, 33_554_432), false, "Maximum inbound WebSocket frame size (1 MiB).";
    ws_per_agent_concurrency_cap: i64 = "Z4J_WS_PER_AGENT_CONCURRENCY_CAP", "64", Check::Int(0, 10_000), false, "Maximum concurrent worker connections per agent (0 = no cap).";
    max_ws_frame_bytes: i64 = "Z4J_MAX_WS_FRAME_BYTES", "1048576", Check::Int(1024, 67_108_864), false, "Compatibility cap; the effective frame cap is the smaller of the two.";

    ["Registry"]
    registry_backend: String = "Z4J_REGISTRY_BACKEND", "postgres_notify", Check::OneOf(&["postgres_notify", "local"]), false, "postgres_notify or local. SQLite forces local.";
    registry_listener_heartbeat_seconds: i64 = "Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS", "10", Check::Int(1, 300), false, "Self-NOTIFY heartbeat for the watchdog on the LISTEN connection.";
    registry_listener_heartbeat_timeout_seconds: i64 = "Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS", "25", Check::Int(2, 600), false, "Silence before the watchdog reconnects the LISTEN connection.";
    registry_listener_max_age_seconds: i64 = "Z4J_REGISTRY_LISTENER_MAX_AGE_SECONDS", "900", Check::Int(60, 86_400), false, "Hard-recycle interval for the LISTEN connection.";
    registry_reconcile_interval_seconds: i64 = "Z4J_REGISTRY_RECONCILE_INTERVAL_SECONDS", "30", Check::Int(1, 600), false, "Poll cadence for pending commands targeting an agent this replica owns.";

    ["Application caps"]
    max_payload_size_bytes: i64 = "Z4J_MAX_PAYLOAD_SIZE_BYTES", "8192", Check::Int(128, 104_857_600), false, "Maximum REST request body size. Larger requests return 413.";
    tasks_export_max_rows: i64 = "Z4J_TASKS_EXPORT_MAX_ROWS", "50000", Check::Int(100, 100_000), false, "Upper bound on rows fetched by task and audit export endpoints.";
    ratelimit_commands_per_minute: i64 = "Z4J_RATELIMIT_COMMANDS_PER_MINUTE", "100", Check::Int(1, 1_000_000), false, "Per-project upper bound on command issuance.";
    ratelimit_events_per_second: i64 = "Z4J_RATELIMIT_EVENTS_PER_SECOND", "10000", Check::Int(1, 100_000_000), false, "Per-project upper bound on event ingestion.";
    admin_project_list_cap: i64 = "Z4J_ADMIN_PROJECT_LIST_CAP", "500", Check::Int(10, 100_000), false, "Upper bound on admin project-listing endpoints.";
    request_timeout_seconds: i64 = "Z4J_REQUEST_TIMEOUT_SECONDS", "30", Check::Int(1, 600), false, "Per-request handler wall-clock budget.";
    rest_default_page_size: i64 = "Z4J_REST_DEFAULT_PAGE_SIZE", "50", Check::Int(1, 1000), false, "Default page size on REST list endpoints.";
    rest_max_page_size: i64 = "Z4J_REST_MAX_PAGE_SIZE", "500", Check::Int(1, 5000), false, "Maximum page size on REST list endpoints.";

    ["Network and security"]
    allowed_hosts: JsonList = "Z4J_ALLOWED_HOSTS", "[]", Check::None, false, "Host-header allow-list (JSON array). z4j allowed-hosts manages a persisted list.";
    cors_origins: JsonList = "Z4J_CORS_ORIGINS", "[]", Check::None, false, "Allowed CORS origins for the dashboard. JSON array of full origins.";
    cors_allow_credentials: bool = "Z4J_CORS_ALLOW_CREDENTIALS", "true", Check::None, false, "Allow credentials on CORS requests.";
    trusted_proxies: Cidrs = "Z4J_TRUSTED_PROXIES", "[]", Check::None, false, "CIDR list of reverse proxies whose X-Forwarded-For is trusted. Empty = none.";
    hsts_max_age_seconds: i64 = "Z4J_HSTS_MAX_AGE_SECONDS", "31536000", Check::Int(0, MAX_SECS), false, "HSTS max-age (default 1 year). Emitted only in production over HTTPS.";
    hsts_include_subdomains: bool = "Z4J_HSTS_INCLUDE_SUBDOMAINS", "true", Check::None, false, "Append includeSubDomains to the HSTS header.";
    allow_http_public_url: bool = "Z4J_ALLOW_HTTP_PUBLIC_URL", "false", Check::None, false, "Test/dev escape hatch: permit a plaintext http:// Z4J_PUBLIC_URL.";
    dashboard_ip_allowlist: Cidrs = "Z4J_DASHBOARD_IP_ALLOWLIST", "[]", Check::None, false, "Source addresses allowed to use the dashboard (empty = all).";
    api_ip_allowlist: Cidrs = "Z4J_API_IP_ALLOWLIST", "[]", Check::None, false, "Source addresses allowed to use the REST API (empty = all).";
    agent_ip_allowlist: Cidrs = "Z4J_AGENT_IP_ALLOWLIST", "[]", Check::None, false, "Source addresses allowed to connect agents (empty = all).";
    debug_host_errors: bool = "Z4J_DEBUG_HOST_ERRORS", "false", Check::None, false, "Name the rejected Host in invalid_host errors (dev only).";

    ["Server"]
    bind_host: String = "Z4J_BIND_HOST", "0.0.0.0", Check::None, false, "Bind host.";
    bind_port: i64 = "Z4J_BIND_PORT", "7700", Check::Int(1, 65_535), false, "Bind port.";
    environment: String = "Z4J_ENVIRONMENT", "production", Check::MaxLen(40), false, "Environment label surfaced in logs and on the dashboard.";
    log_json: bool = "Z4J_LOG_JSON", "true", Check::None, false, "Emit logs as JSON (true) or human-readable console output (false).";
    log_level: String = "Z4J_LOG_LEVEL", "INFO", Check::OneOf(&["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]), false, "Logging level.";
    log_format: Option<String> = "Z4J_LOG_FORMAT", "", Check::OneOf(&["json", "text"]), false, "json or text; overrides Z4J_LOG_JSON when set.";
    version_check_url: String = "Z4J_VERSION_CHECK_URL", "https://raw.githubusercontent.com/z4jdev/z4j/main/versions.json", Check::MaxLen(2048), false, "Source URL for the dashboard's check-for-updates button.";
    openapi_visibility: String = "Z4J_OPENAPI_VISIBILITY", "private", Check::OneOf(&["private", "public", "disabled"]), false, "Who may read the OpenAPI document.";

    ["Command timeout"]
    command_timeout_seconds: i64 = "Z4J_COMMAND_TIMEOUT_SECONDS", "60", Check::Int(10, 3600), false, "Age past which a dispatched command is marked timed out.";
    command_timeout_sweep_seconds: i64 = "Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS", "5", Check::Int(1, 300), false, "Cadence for the command-timeout sweeper.";
    agent_longpoll_redispatch_seconds: i64 = "Z4J_AGENT_LONGPOLL_REDISPATCH_SECONDS", "60", Check::Int(10, 3600), false, "Long-poll redelivery window for unacknowledged commands.";
    agent_longpoll_redispatch_min_interval_seconds: i64 = "Z4J_AGENT_LONGPOLL_REDISPATCH_MIN_INTERVAL_SECONDS", "10", Check::Int(1, 3600), false, "Minimum interval between long-poll redeliveries.";
    redaction_extra_key_patterns: JsonList = "Z4J_REDACTION_EXTRA_KEY_PATTERNS", "[]", Check::None, false, "Extra sensitive-key regexes for brain-side event redaction.";

    ["Scheduler gRPC"]
    scheduler_grpc_enabled: bool = "Z4J_SCHEDULER_GRPC_ENABLED", "false", Check::None, false, "Accept mTLS gRPC connections from z4j-scheduler.";
    scheduler_grpc_bind_host: String = "Z4J_SCHEDULER_GRPC_BIND_HOST", "0.0.0.0", Check::None, false, "Bind interface for the scheduler gRPC server.";
    scheduler_grpc_bind_port: i64 = "Z4J_SCHEDULER_GRPC_BIND_PORT", "7701", Check::Int(0, 65_535), false, "Bind port for the scheduler gRPC server (0 = ephemeral).";
    scheduler_grpc_allowed_cns: JsonList = "Z4J_SCHEDULER_GRPC_ALLOWED_CNS", "[]", Check::None, false, "JSON array of allow-listed scheduler client CNs.";
    scheduler_grpc_require_allowlist: bool = "Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST", "false", Check::None, false, "Fail closed if the CN allow-list is empty.";
    scheduler_grpc_cn_project_bindings: JsonObject = "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS", "{}", Check::None, false, "JSON object mapping scheduler CN to allowed project list.";
    scheduler_grpc_tls_cert: Option<String> = "Z4J_SCHEDULER_GRPC_TLS_CERT", "", Check::None, false, "Brain's gRPC server certificate (PEM path).";
    scheduler_grpc_tls_key: Option<String> = "Z4J_SCHEDULER_GRPC_TLS_KEY", "", Check::None, false, "Brain's gRPC server private key (PEM path).";
    scheduler_grpc_tls_ca: Option<String> = "Z4J_SCHEDULER_GRPC_TLS_CA", "", Check::None, false, "CA bundle for validating scheduler client certs.";
    scheduler_grpc_insecure: bool = "Z4J_SCHEDULER_GRPC_INSECURE", "false", Check::None, false, "Dev/test only: bind the scheduler gRPC port without TLS.";
    scheduler_grpc_grace_seconds: f64 = "Z4J_SCHEDULER_GRPC_GRACE_SECONDS", "5.0", Check::Float(0.1, 60.0), false, "Graceful drain window on shutdown for in-flight RPCs.";
    scheduler_grpc_fire_rate_limit_enabled: bool = "Z4J_SCHEDULER_GRPC_FIRE_RATE_LIMIT_ENABLED", "true", Check::None, false, "Enable the per-cert rate limit on FireSchedule.";
    scheduler_grpc_fire_rate_per_second: f64 = "Z4J_SCHEDULER_GRPC_FIRE_RATE_PER_SECOND", "10.0", Check::Float(0.01, 10_000.0), false, "Sustained refill rate (tokens/s) of the per-cert fire-rate limit.";
    scheduler_grpc_fire_rate_capacity: f64 = "Z4J_SCHEDULER_GRPC_FIRE_RATE_CAPACITY", "600.0", Check::Float(1.0, 1_000_000.0), false, "Maximum burst of the per-cert fire-rate limit.";
    scheduler_grpc_watch_max_concurrent: i64 = "Z4J_SCHEDULER_GRPC_WATCH_MAX_CONCURRENT", "64", Check::Int(1, 10_000), false, "Cap on concurrent WatchSchedules streams per brain process.";
    scheduler_grpc_watch_max_per_cert: i64 = "Z4J_SCHEDULER_GRPC_WATCH_MAX_PER_CERT", "4", Check::Int(1, 1000), false, "Per-CN cap on concurrent WatchSchedules streams.";
    scheduler_grpc_watch_poll_seconds: f64 = "Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS", "2.0", Check::Float(0.5, 60.0), false, "Poll cadence for the watch-stream backend.";
    scheduler_misfire_grace_seconds: i64 = "Z4J_SCHEDULER_MISFIRE_GRACE_SECONDS", "60", Check::Int(5, 3600), false, "How late a cron or interval schedule's expected fire may be before it counts as misfired (reference setting, not in the operator documentation).";
    scheduler_misfire_sweep_seconds: i64 = "Z4J_SCHEDULER_MISFIRE_SWEEP_SECONDS", "60", Check::Int(0, 3600), false, "Cadence of the misfire detector; 0 turns it off (reference setting, not in the operator documentation).";
    scheduler_info_urls: JsonList = "Z4J_SCHEDULER_INFO_URLS", "[]", Check::None, false, "HTTP URLs of scheduler instances for the fleet-status page.";

    ["Scheduler trigger client"]
    scheduler_trigger_url: Option<String> = "Z4J_SCHEDULER_TRIGGER_URL", "", Check::None, false, "host:port of the scheduler's TriggerSchedule listener.";
    scheduler_trigger_tls_cert: Option<String> = "Z4J_SCHEDULER_TRIGGER_TLS_CERT", "", Check::None, false, "Path to the brain's client certificate.";
    scheduler_trigger_tls_key: Option<String> = "Z4J_SCHEDULER_TRIGGER_TLS_KEY", "", Check::None, false, "Path to the brain's client key.";
    scheduler_trigger_tls_ca: Option<String> = "Z4J_SCHEDULER_TRIGGER_TLS_CA", "", Check::None, false, "Path to the CA bundle verifying the scheduler's server cert.";

    ["Embedded scheduler"]
    embedded_scheduler: bool = "Z4J_EMBEDDED_SCHEDULER", "false", Check::None, false, "Spawn z4j-scheduler as a supervised subprocess.";
    embedded_scheduler_argv: JsonList = "Z4J_EMBEDDED_SCHEDULER_ARGV", "[\"serve\"]", Check::None, false, "Subprocess argv after the implicit interpreter prefix.";
    embedded_scheduler_pki_dir: Option<String> = "Z4J_EMBEDDED_SCHEDULER_PKI_DIR", "", Check::None, false, "Directory for auto-minted loopback mTLS PKI (default $Z4J_HOME/embedded-pki, i.e. ~/.z4j/embedded-pki/).";
    embedded_scheduler_restart_max_attempts: i64 = "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS", "10", Check::Int(0, 10_000), false, "Maximum auto-restart attempts before the supervisor gives up.";
    embedded_scheduler_restart_backoff_seconds: f64 = "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS", "2.0", Check::Float(0.1, 60.0), false, "Initial backoff between restart attempts (doubles up to 60 s).";
    embedded_scheduler_shutdown_grace_seconds: f64 = "Z4J_EMBEDDED_SCHEDULER_SHUTDOWN_GRACE_SECONDS", "10.0", Check::Float(0.5, 60.0), false, "Grace window for SIGTERM before SIGKILL.";
    embedded_scheduler_python: String = "Z4J_EMBEDDED_SCHEDULER_PYTHON", "python3", Check::None, false, "z4j-rs: the Python interpreter that runs `-m z4j_scheduler` (a path, or a name looked up on PATH); z4j-scheduler must be importable by it.";

    ["Schedule fires"]
    schedule_fires_retention_days: i64 = "Z4J_SCHEDULE_FIRES_RETENTION_DAYS", "30", Check::Int(1, 3650), false, "Days schedule_fires rows live before the periodic prune.";
    pending_fires_retention_days: i64 = "Z4J_PENDING_FIRES_RETENTION_DAYS", "7", Check::Int(1, 365), false, "Days buffered fires can stay pending before being dropped.";
    pending_fires_replay_interval_seconds: i64 = "Z4J_PENDING_FIRES_REPLAY_INTERVAL_SECONDS", "10", Check::Int(1, 300), false, "Cadence for the buffered-fire replay worker.";
    schedule_circuit_breaker_threshold: i64 = "Z4J_SCHEDULE_CIRCUIT_BREAKER_THRESHOLD", "5", Check::Int(0, 100), false, "Consecutive failed fires before a schedule is auto-disabled (0 = off).";
    schedule_circuit_breaker_interval_seconds: i64 = "Z4J_SCHEDULE_CIRCUIT_BREAKER_INTERVAL_SECONDS", "60", Check::Int(5, 3600), false, "Sweep cadence for the schedule circuit-breaker worker.";

    ["Infrastructure"]
    dashboard_dist: Option<String> = "Z4J_DASHBOARD_DIST", "", Check::None, false, "Filesystem path to built dashboard assets.";
    disable_spa_fallback: bool = "Z4J_DISABLE_SPA_FALLBACK", "false", Check::None, false, "Test flag: no SPA catch-all route.";
}

/// Variables read before the catalog (they locate the files) or only by the
/// CLI; known, so never reported as typos.
pub const PROCESS_VARIABLES: &[&str] = &["Z4J_HOME"];

/// Agent-side keys of the seed: read by agents, ignored by the brain, but
/// often present in a shared environment, so not reported as typos.
pub const AGENT_SIDE_VARIABLES: &[&str] = &[
    "Z4J_BRAIN_URL",
    "Z4J_TOKEN",
    "Z4J_HMAC_SECRET",
    "Z4J_PROJECT_ID",
    "Z4J_AGENT_NAME",
    "Z4J_BUFFER_SIZE",
    "Z4J_HEARTBEAT_INTERVAL",
    "Z4J_RECONNECT_BACKOFF_MAX",
    "Z4J_TRANSPORT",
    "Z4J_AGENT_STATUS_DISABLED",
    "Z4J_BUFFER_PATH",
    "Z4J_DEV_MODE",
];

pub fn spec(env: &str) -> Option<&'static VarSpec> {
    CATALOG.iter().find(|s| s.env == env)
}

pub fn is_known(env: &str) -> bool {
    spec(env).is_some() || PROCESS_VARIABLES.contains(&env) || AGENT_SIDE_VARIABLES.contains(&env)
}
