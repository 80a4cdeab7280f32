//! Every case of the suite, and helpers they share.

mod account;
mod activity;
mod aggregates;
mod api_keys;
mod audit;
mod auth;
mod cli;
mod commands;
mod config;
mod dashboard;
mod database;
mod defaults;
mod embedded;
mod faults;
mod first_boot;
pub mod gateway;
mod gateway_defaults;
mod grey;
mod hardening;
mod hostile;
mod interop;
mod invitations;
mod metrics;
mod metrics_token;
mod mfa;
mod notifications;
mod password_reset;
mod registry;
mod saved_views;
mod schedule_pages;
mod scheduler;
mod server;
mod users;
mod workers;

use crate::brain::Brain;
use crate::runner::{Case, Ctx};
use std::sync::Arc;
use std::time::Duration;

pub type R = Result<(), String>;

/// Builds a [`Case`] from an `async fn(Arc<Ctx>) -> R`. A clause may be
/// followed by what the case asserts about it, e.g.
/// `"Z4J_WS_MAX_FRAME_BYTES" [Default, Below, Above]` (see
/// [`crate::runner::Assert`]).
macro_rules! case {
    ($name:literal, $f:path, [$($clause:literal $([$($a:ident),* $(,)?])?),+ $(,)?], $dbs:ident $(, feature = $feat:literal)?) => {
        $crate::runner::Case {
            name: $name,
            clauses: &[$($clause),+],
            asserts: &[$(($clause, &[$($($crate::runner::Assert::$a),*)?])),+],
            dbs: $crate::runner::Dbs::$dbs,
            feature: { #[allow(unused_mut, unused_assignments)] let mut f: Option<&'static str> = None; $( f = Some($feat); )? f },
            run: |ctx| -> $crate::runner::CaseFuture { Box::pin($f(ctx)) },
        }
    };
}

pub static CASES: &[Case] = &[
    // The longest case first: slots are granted in list order.
    case!(
        "embedded.backoff-cap",
        embedded::backoff_cap,
        ["Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS" [Above, Lower, Upper]],
        SqliteOnly
    ),
    case!(
        "embedded.max-attempts-default",
        embedded::max_attempts_default,
        [
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS" [Default, Below, Above],
            "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS" [Lower, Upper],
            "scheduler.embedded-supervision",
        ],
        Both
    ),
    case!(
        "scheduler.keepalive",
        scheduler::keepalive,
        ["scheduler.keepalive"],
        SqliteOnly
    ),
    case!(
        "scheduler.replica-takeover",
        scheduler::replica_takeover,
        ["scheduler.interop", "scheduler.watch"],
        PostgresOnly
    ),
    case!(
        "embedded.shutdown-grace",
        embedded::shutdown_grace,
        [
            "Z4J_EMBEDDED_SCHEDULER_SHUTDOWN_GRACE_SECONDS" [Default, Lower, Upper],
            "server.graceful-shutdown"
        ],
        Both
    ),
    case!(
        "embedded.real-scheduler",
        embedded::real_scheduler,
        ["scheduler.embedded-interop", "Z4J_EMBEDDED_SCHEDULER"],
        Both
    ),
    case!(
        "embedded.restart-backoff-default",
        embedded::restart_backoff_default,
        [
            "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS" [Default, Lower, Upper],
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS" [Below, Above],
            "scheduler.embedded-supervision",
        ],
        Both
    ),
    case!(
        "embedded.standby",
        embedded::standby,
        ["scheduler.embedded-supervision"],
        PostgresOnly
    ),
    case!(
        "embedded.spawn",
        embedded::spawn,
        [
            "Z4J_EMBEDDED_SCHEDULER",
            "Z4J_EMBEDDED_SCHEDULER_ARGV"[Default],
            "Z4J_EMBEDDED_SCHEDULER_PKI_DIR"[Default],
            "scheduler.embedded",
            "api.schedulers-fleet",
            "scheduler.legacy-protocol",
            "server.graceful-shutdown",
        ],
        Both
    ),
    case!(
        "embedded.pki-dir",
        embedded::pki_dir,
        ["Z4J_EMBEDDED_SCHEDULER_PKI_DIR", "scheduler.embedded"],
        Both
    ),
    case!(
        "embedded.refusals",
        embedded::refusals,
        [
            "Z4J_EMBEDDED_SCHEDULER" [Default],
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
            "Z4J_EMBEDDED_SCHEDULER_PKI_DIR",
            "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS" [Below, Above],
            "Z4J_EMBEDDED_SCHEDULER_SHUTDOWN_GRACE_SECONDS" [Below, Above],
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS",
            "scheduler.embedded",
        ],
        SqliteOnly
    ),
    case!(
        "embedded.max-attempts-zero",
        embedded::max_attempts_zero,
        [
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS"[Below],
            "scheduler.embedded-supervision"
        ],
        Both
    ),
    case!(
        "embedded.orphan",
        embedded::orphan,
        ["scheduler.embedded-supervision"],
        Both
    ),
    case!(
        "scheduler.breaker-interval-default",
        scheduler::breaker_interval_default,
        ["Z4J_SCHEDULE_CIRCUIT_BREAKER_INTERVAL_SECONDS" [Default, Lower, Upper]],
        Both
    ),
    case!(
        "scheduler.real-scheduler",
        scheduler::real_scheduler_interop,
        ["scheduler.interop", "Z4J_SCHEDULER_INFO_URLS"],
        Both
    ),
    case!(
        "scheduler.grace-drain",
        scheduler::grace_drain,
        ["Z4J_SCHEDULER_GRPC_GRACE_SECONDS" [Default, Lower, Upper]],
        Both
    ),
    case!(
        "scheduler.fire-rate-default",
        scheduler::fire_rate_default,
        [
            "Z4J_SCHEDULER_GRPC_FIRE_RATE_CAPACITY"[Default],
            "Z4J_SCHEDULER_GRPC_FIRE_RATE_PER_SECOND"[Default],
            "Z4J_SCHEDULER_GRPC_ALLOWED_CNS"[Default],
            "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS"[Default],
        ],
        Both
    ),
    case!(
        "scheduler.default-bind",
        scheduler::default_bind,
        [
            "Z4J_SCHEDULER_GRPC_ENABLED"[Default],
            "Z4J_SCHEDULER_GRPC_BIND_HOST"[Default],
            "Z4J_SCHEDULER_GRPC_BIND_PORT"[Default],
        ],
        Both
    ),
    case!(
        "scheduler.watch-max-concurrent-default",
        scheduler::watch_max_concurrent_default,
        ["Z4J_SCHEDULER_GRPC_WATCH_MAX_CONCURRENT"[Default]],
        Both
    ),
    case!(
        "scheduler.watch-poll-default",
        scheduler::watch_poll_default,
        ["Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS" [Default, Lower, Upper]],
        Both
    ),
    case!(
        "scheduler.replay",
        scheduler::replay,
        ["Z4J_PENDING_FIRES_REPLAY_INTERVAL_SECONDS" [Default, Lower, Upper], "scheduler.replay"],
        Both
    ),
    case!(
        "scheduler.breaker",
        scheduler::breaker,
        [
            "Z4J_SCHEDULE_CIRCUIT_BREAKER_THRESHOLD" [Default, Below, Above],
            "Z4J_SCHEDULE_CIRCUIT_BREAKER_INTERVAL_SECONDS" [Upper],
        ],
        Both
    ),
    case!(
        "scheduler.fleet",
        scheduler::fleet,
        ["Z4J_SCHEDULER_INFO_URLS"[Default], "api.schedulers-fleet"],
        Both
    ),
    case!(
        "scheduler.trigger-ignored",
        scheduler::trigger_ignored,
        [
            "Z4J_SCHEDULER_TRIGGER_URL",
            "Z4J_SCHEDULER_TRIGGER_TLS_CERT",
            "Z4J_SCHEDULER_TRIGGER_TLS_KEY",
            "Z4J_SCHEDULER_TRIGGER_TLS_CA",
        ],
        SqliteOnly
    ),
    case!(
        "scheduler.retention",
        scheduler::retention,
        [
            "Z4J_PENDING_FIRES_RETENTION_DAYS" [Default, Below, Above, Grey],
            "Z4J_SCHEDULE_FIRES_RETENTION_DAYS" [Default, Below, Above],
        ],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "scheduler.real-scheduler-mtls",
        scheduler::real_scheduler_mtls,
        ["scheduler.interop-mtls", "Z4J_SCHEDULER_GRPC_ALLOWED_CNS"],
        Both
    ),
    case!("scheduler.runs", scheduler::runs, ["api.schedules"], Both),
    case!(
        "scheduler.trigger-now",
        scheduler::trigger_now,
        ["api.schedules.trigger"],
        Both
    ),
    case!(
        "scheduler.fire-rate",
        scheduler::fire_rate,
        [
            "Z4J_SCHEDULER_GRPC_FIRE_RATE_CAPACITY" [Below, Above],
            "Z4J_SCHEDULER_GRPC_FIRE_RATE_PER_SECOND" [Lower, Upper],
            "Z4J_SCHEDULER_GRPC_FIRE_RATE_LIMIT_ENABLED" [Default, Above],
        ],
        Both
    ),
    case!(
        "scheduler.legacy-surface",
        scheduler::legacy_surface,
        [
            "Z4J_SCHEDULER_GRPC_ENABLED",
            "Z4J_SCHEDULER_GRPC_BIND_HOST",
            "Z4J_SCHEDULER_GRPC_BIND_PORT",
            "Z4J_SCHEDULER_GRPC_INSECURE",
            "Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST"[Default],
            "scheduler.legacy-protocol",
        ],
        Both
    ),
    case!(
        "scheduler.insecure-outside-dev",
        scheduler::insecure_outside_dev,
        ["Z4J_SCHEDULER_GRPC_INSECURE"[Default]],
        SqliteOnly
    ),
    case!(
        "scheduler.fire-and-ack",
        scheduler::fire_and_ack,
        ["Z4J_SCHEDULER_GRPC_ENABLED", "scheduler.fire"],
        Both
    ),
    case!(
        "scheduler.watch",
        scheduler::watch,
        [
            "Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS"[Upper],
            "scheduler.watch"
        ],
        Both
    ),
    case!(
        "scheduler.watch-caps",
        scheduler::watch_caps,
        ["Z4J_SCHEDULER_GRPC_WATCH_MAX_PER_CERT" [Default, Below, Above]],
        Both
    ),
    case!(
        "scheduler.mtls",
        scheduler::mtls,
        [
            "Z4J_SCHEDULER_GRPC_TLS_CERT",
            "Z4J_SCHEDULER_GRPC_TLS_KEY",
            "Z4J_SCHEDULER_GRPC_TLS_CA",
            "Z4J_SCHEDULER_GRPC_ALLOWED_CNS",
            "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS",
            "Z4J_SCHEDULER_GRPC_WATCH_MAX_CONCURRENT" [Below, Above],
        ],
        Both
    ),
    case!(
        "scheduler.start-refusals",
        scheduler::start_refusals,
        [
            "Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST",
            "Z4J_SCHEDULER_GRPC_TLS_CERT",
            "Z4J_SCHEDULER_GRPC_TLS_KEY",
            "Z4J_SCHEDULER_GRPC_TLS_CA",
            "Z4J_SCHEDULER_GRPC_ALLOWED_CNS",
            "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS",
            "Z4J_SCHEDULER_GRPC_BIND_PORT",
        ],
        SqliteOnly
    ),
    case!("scheduler.rest", scheduler::rest, ["api.schedules"], Both),
    case!(
        "mfa.freshness-default",
        mfa::freshness_default,
        ["Z4J_MFA_VERIFICATION_TTL_SECONDS" [Default, Below, Above]],
        Both
    ),
    case!(
        "registry.max-age-default",
        registry::max_age_default,
        ["Z4J_REGISTRY_LISTENER_MAX_AGE_SECONDS" [Default, Lower, Upper]],
        PostgresOnly,
        feature = "registry_single_session"
    ),
    case!(
        "workers.reconciliation-default",
        workers::reconciliation_default,
        [
            "Z4J_RECONCILIATION_SWEEP_SECONDS" [Default, Lower, Upper, Grey],
            "Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS" [Default, Below, Above, Grey]
        ],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "defaults.login",
        defaults::login,
        [
            "Z4J_LOGIN_MIN_DURATION_MS" [Default, Lower, Upper],
            "Z4J_LOGIN_BACKOFF_BASE_SECONDS" [Default, Lower, Upper],
            "Z4J_LOGIN_BACKOFF_MAX_SECONDS" [Default, Lower, Upper],
            "Z4J_LOGIN_LOCKOUT_THRESHOLD" [Default, Below, Above],
            "Z4J_LOGIN_LOCKOUT_DURATION_SECONDS" [Default, Below, Above],
            "Z4J_LOG_LOGIN_EMAIL" [Default],
            "Z4J_SESSION_COOKIE_SAMESITE" [Default]
        ],
        Both,
        feature = "testing_clock_offset"
    ),
    case!(
        "defaults.sessions",
        defaults::sessions,
        [
            "Z4J_SESSION_IDLE_TIMEOUT_SECONDS" [Default, Below, Above],
            "Z4J_SESSION_ABSOLUTE_LIFETIME_SECONDS" [Default, Below, Above],
            "Z4J_SESSION_PIN_USER_AGENT" [Default]
        ],
        Both,
        feature = "testing_clock_offset"
    ),
    case!(
        "defaults.http",
        defaults::http,
        [
            "Z4J_ALLOWED_HOSTS" [Default],
            "Z4J_ADMIN_PROJECT_LIST_CAP" [Default, Below, Above],
            "Z4J_TRUSTED_PROXIES" [Default]
        ],
        Both
    ),
    case!(
        "defaults.pages",
        defaults::pages,
        [
            "Z4J_REST_DEFAULT_PAGE_SIZE" [Default],
            "Z4J_REST_MAX_PAGE_SIZE" [Default, Below, Above]
        ],
        Both
    ),
    case!(
        "defaults.request-timeout",
        defaults::request_timeout,
        ["Z4J_REQUEST_TIMEOUT_SECONDS" [Default, Lower, Upper]],
        Both
    ),
    case!(
        "gateway.defaults-sessions",
        gateway_defaults::sessions,
        [
            "Z4J_WS_MAX_FRAME_BYTES" [Default, Below, Above],
            "Z4J_WS_PER_AGENT_CONCURRENCY_CAP" [Default, Below, Above],
            "Z4J_WS_IDLE_TIMEOUT_SECONDS" [Default, Lower, Upper]
        ],
        Both
    ),
    case!(
        "gateway.defaults-offline",
        gateway_defaults::offline,
        [
            "Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS" [Default, Lower, Upper],
            "Z4J_AGENT_HEALTH_SWEEP_SECONDS" [Default, Lower, Upper],
            "Z4J_AGENT_IP_ALLOWLIST" [Default]
        ],
        Both
    ),
    case!(
        "gateway.defaults-events-rate",
        gateway_defaults::events_rate,
        ["Z4J_RATELIMIT_EVENTS_PER_SECOND" [Default, Below, Above, Lower, Upper]],
        Both
    ),
    case!(
        "gateway.defaults-ingest-queue",
        gateway_defaults::ingest_queue,
        ["Z4J_WS_INGEST_QUEUE_MAXSIZE" [Default, Below, Above]],
        Both
    ),
    case!(
        "gateway.defaults-stale-prune",
        gateway_defaults::stale_prune,
        ["Z4J_AGENT_STALE_PRUNE_DAYS" [Default, Below, Above, Grey]],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "gateway.handshake-and-ingest",
        gateway::handshake_and_ingest,
        [
            "protocol.hello-ack-first",
            "protocol.ingest",
            "api.agents",
            "api.read",
            "Z4J_REST_DEFAULT_PAGE_SIZE",
            "Z4J_REST_MAX_PAGE_SIZE"
        ],
        Both
    ),
    case!(
        "gateway.handshake-refusals",
        gateway::handshake_refusals,
        [
            "protocol.close.4400",
            "protocol.close.4401",
            "protocol.close.4426",
            "Z4J_WS_MAX_FRAME_BYTES"
        ],
        Both
    ),
    case!(
        "gateway.session-refusals",
        gateway::session_refusals,
        [
            "protocol.close.4403",
            "protocol.close.1011",
            "protocol.close.4400",
            "protocol.replay-window",
            "Z4J_WS_MAX_FRAME_BYTES"
        ],
        Both
    ),
    case!(
        "gateway.slots-and-cap",
        gateway::slots_and_cap,
        [
            "protocol.close.4002",
            "protocol.close.4429",
            "Z4J_WS_PER_AGENT_CONCURRENCY_CAP"
        ],
        Both
    ),
    case!(
        "gateway.revoke-kicks",
        gateway::revoke_kicks,
        ["protocol.close.4003", "api.agents"],
        Both
    ),
    case!(
        "gateway.idle-timeout",
        gateway::idle_timeout,
        ["protocol.close.4408", "Z4J_WS_IDLE_TIMEOUT_SECONDS"],
        Both
    ),
    case!(
        "gateway.connect-budget",
        gateway::connect_budget,
        ["protocol.close.4429"],
        SqliteOnly
    ),
    case!(
        "gateway.event-rate-limit",
        gateway::event_rate_limit,
        [
            "Z4J_RATELIMIT_EVENTS_PER_SECOND",
            "Z4J_WS_INGEST_QUEUE_MAXSIZE"
        ],
        Both
    ),
    case!(
        "gateway.pings-while-queue-full",
        gateway::pings_while_queue_full,
        ["Z4J_WS_INGEST_QUEUE_MAXSIZE"],
        Both
    ),
    case!(
        "gateway.longpoll-sessions",
        gateway::longpoll_sessions,
        ["protocol.longpoll"],
        Both
    ),
    case!(
        "gateway.address-allowlist",
        gateway::address_allowlist,
        [
            "Z4J_AGENT_IP_ALLOWLIST",
            "Z4J_TRUSTED_PROXIES",
            "protocol.close.4403"
        ],
        Both
    ),
    case!(
        "gateway.previous-secrets",
        gateway::previous_secrets,
        ["Z4J_PREVIOUS_SECRETS", "protocol.close.4403"],
        Both
    ),
    case!(
        "gateway.archived-project",
        gateway::archived_project,
        ["protocol.close.4003", "protocol.close.4401", "api.projects"],
        Both
    ),
    case!(
        "commands.round-trip",
        commands::round_trip,
        ["api.commands", "protocol.commands"],
        Both
    ),
    case!(
        "commands.pending-pushed-after-handshake",
        commands::pending_pushed_after_handshake,
        ["protocol.commands"],
        Both
    ),
    case!(
        "commands.longpoll-delivery",
        commands::longpoll_delivery,
        ["protocol.commands", "protocol.longpoll"],
        Both
    ),
    case!(
        "commands.longpoll-redelivery",
        commands::longpoll_redelivery,
        [
            "protocol.longpoll",
            "Z4J_AGENT_LONGPOLL_REDISPATCH_SECONDS",
            "Z4J_AGENT_LONGPOLL_REDISPATCH_MIN_INTERVAL_SECONDS"
        ],
        Both
    ),
    case!(
        "commands.longpoll-redelivery-default",
        commands::longpoll_redelivery_default,
        [
            "Z4J_AGENT_LONGPOLL_REDISPATCH_SECONDS" [Default, Below, Above],
            "Z4J_AGENT_LONGPOLL_REDISPATCH_MIN_INTERVAL_SECONDS" [Default, Below, Above]
        ],
        Both
    ),
    case!(
        "commands.timeout-sweep",
        commands::timeout_sweep,
        [
            "Z4J_COMMAND_TIMEOUT_SECONDS",
            "Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS"
        ],
        Both
    ),
    case!(
        "commands.defaults",
        commands::defaults,
        [
            "Z4J_RATELIMIT_COMMANDS_PER_MINUTE" [Default, Below, Above],
            "Z4J_COMMAND_TIMEOUT_SECONDS" [Default, Lower, Upper],
            "Z4J_COMMAND_TIMEOUT_SWEEP_SECONDS" [Default, Lower, Upper]
        ],
        Both
    ),
    case!(
        "commands.bulk-retry-selection",
        commands::bulk_retry_selection,
        ["commands.bulk-retry-selection"],
        Both
    ),
    case!(
        "commands.refusals",
        commands::refusals,
        ["api.commands.refusals"],
        Both
    ),
    case!(
        "commands.wait-outcome",
        commands::wait_outcome,
        ["api.commands.wait", "Z4J_COMMAND_TIMEOUT_SECONDS"],
        Both
    ),
    case!(
        "commands.rate-limit",
        commands::rate_limit,
        ["Z4J_RATELIMIT_COMMANDS_PER_MINUTE"],
        Both
    ),
    case!(
        "registry.cross-replica",
        registry::cross_replica,
        [
            "Z4J_REGISTRY_BACKEND"[Default],
            "Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS",
            "registry.cross-replica",
            "registry.listener-loss"
        ],
        PostgresOnly
    ),
    case!(
        "registry.local-backend",
        registry::local_backend,
        ["Z4J_REGISTRY_BACKEND"],
        PostgresOnly
    ),
    case!(
        "registry.heartbeat",
        registry::heartbeat,
        ["Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS"],
        PostgresOnly
    ),
    case!(
        "registry.heartbeat-timeout",
        registry::heartbeat_timeout,
        ["Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS"],
        PostgresOnly
    ),
    case!(
        "registry.max-age",
        registry::max_age,
        [
            "Z4J_REGISTRY_LISTENER_MAX_AGE_SECONDS",
            "Z4J_REGISTRY_LISTENER_HEARTBEAT_SECONDS" [Default, Lower, Upper]
        ],
        PostgresOnly
    ),
    case!(
        "registry.heartbeat-timeout-default",
        registry::heartbeat_timeout_default,
        ["Z4J_REGISTRY_LISTENER_HEARTBEAT_TIMEOUT_SECONDS" [Default, Below, Above]],
        PostgresOnly,
        feature = "registry_single_session"
    ),
    case!(
        "registry.reconcile-default",
        registry::reconcile_default,
        ["Z4J_REGISTRY_RECONCILE_INTERVAL_SECONDS" [Default, Lower, Upper, Grey]],
        PostgresOnly,
        feature = "registry_single_session"
    ),
    case!(
        "registry.reconcile-poll",
        registry::reconcile_poll,
        ["Z4J_REGISTRY_RECONCILE_INTERVAL_SECONDS"],
        PostgresOnly,
        feature = "schema_z4j_rs"
    ),
    case!(
        "workers.reconciliation",
        workers::reconciliation,
        [
            "Z4J_RECONCILIATION_SWEEP_SECONDS",
            "Z4J_RECONCILIATION_STALE_THRESHOLD_SECONDS"
        ],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "workers.leader-election",
        workers::leader_election,
        ["workers.leader-election"],
        PostgresOnly,
        feature = "schema_z4j_rs"
    ),
    case!(
        "workers.event-retention",
        workers::event_retention,
        ["Z4J_EVENT_RETENTION_DAYS" [Default, Below, Above]],
        Both
    ),
    case!(
        "workers.event-partitions",
        workers::event_partitions,
        ["Z4J_EVENT_RETENTION_DAYS", "workers.event-partitions"],
        PostgresOnly,
        feature = "schema_z4j_rs"
    ),
    case!(
        "notifications.task-failed",
        notifications::task_failed_webhook,
        ["notifications.webhook"],
        Both,
        feature = "webhook_loopback_opt_in"
    ),
    case!(
        "notifications.failing-receivers",
        notifications::failing_receivers,
        ["notifications.retries"],
        Both,
        feature = "webhook_loopback_opt_in"
    ),
    case!(
        "notifications.endless-receiver",
        notifications::endless_receiver_case,
        ["notifications.bounded-answer", "notifications.retries"],
        Both,
        feature = "webhook_loopback_opt_in"
    ),
    case!(
        "notifications.http-policy",
        notifications::http_policy,
        ["Z4J_NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"[Default]],
        Both,
        feature = "webhook_loopback_opt_in"
    ),
    case!(
        "notifications.agent-offline",
        notifications::agent_offline,
        [
            "notifications.agent-offline",
            "Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS"
        ],
        Both,
        feature = "webhook_loopback_opt_in"
    ),
    case!(
        "notifications.schedule-misfired",
        notifications::schedule_misfired,
        ["scheduler.misfires"],
        Both,
        feature = "webhook_loopback_opt_in"
    ),
    case!(
        "notifications.misfire-cron-parity",
        notifications::misfire_cron_parity,
        ["scheduler.misfires"],
        Both
    ),
    case!(
        "notifications.schedule-breaker",
        notifications::schedule_breaker,
        ["notifications.schedule-breaker"],
        Both,
        feature = "webhook_loopback_opt_in"
    ),
    case!(
        "auth.lockout",
        auth::lockout,
        [
            "Z4J_LOGIN_LOCKOUT_THRESHOLD",
            "Z4J_LOGIN_LOCKOUT_DURATION_SECONDS"
        ],
        Both
    ),
    case!(
        "auth.backoff",
        auth::backoff,
        [
            "Z4J_LOGIN_BACKOFF_BASE_SECONDS",
            "Z4J_LOGIN_BACKOFF_MAX_SECONDS"
        ],
        Both
    ),
    case!(
        "auth.login-bucket",
        auth::login_bucket,
        ["api.ratelimit.login"],
        Both
    ),
    case!(
        "auth.uniform-timing",
        auth::uniform_timing,
        ["Z4J_LOGIN_MIN_DURATION_MS", "api.login.timing"],
        Both
    ),
    case!(
        "auth.log-login-email",
        auth::log_login_email,
        ["Z4J_LOG_LOGIN_EMAIL"],
        Both
    ),
    case!(
        "auth.session-limits",
        auth::session_limits,
        [
            "Z4J_SESSION_IDLE_TIMEOUT_SECONDS",
            "Z4J_SESSION_ABSOLUTE_LIFETIME_SECONDS"
        ],
        Both
    ),
    case!(
        "auth.pin-user-agent",
        auth::pin_user_agent,
        ["Z4J_SESSION_PIN_USER_AGENT"],
        Both
    ),
    case!(
        "auth.session-secret-rotation",
        auth::session_secret_rotation,
        ["Z4J_PREVIOUS_SESSION_SECRETS"],
        Both
    ),
    case!(
        "auth.rehash-on-login",
        auth::rehash_on_login,
        [
            "Z4J_ARGON2_TIME_COST" [Default, Grey],
            "Z4J_ARGON2_MEMORY_COST" [Default, Grey],
            "Z4J_ARGON2_PARALLELISM" [Default, Grey]
        ],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "hardening.security-headers",
        hardening::security_headers,
        [
            "api.security-headers",
            "Z4J_HSTS_MAX_AGE_SECONDS"[Default],
            "Z4J_HSTS_INCLUDE_SUBDOMAINS"[Default]
        ],
        Both
    ),
    case!(
        "hardening.json-bodies",
        hardening::json_bodies,
        ["http.json-bodies"],
        Both
    ),
    case!(
        "hardening.body-cap",
        hardening::body_cap,
        ["Z4J_MAX_PAYLOAD_SIZE_BYTES" [Default, Below, Above]],
        Both
    ),
    case!(
        "hardening.body-cap-longpoll",
        hardening::body_cap_longpoll,
        ["gateway.longpoll-body-cap", "Z4J_MAX_PAYLOAD_SIZE_BYTES" [Default, Below, Above]],
        Both
    ),
    case!(
        "hardening.allowed-hosts",
        hardening::allowed_hosts,
        ["Z4J_ALLOWED_HOSTS"],
        Both
    ),
    case!(
        "hardening.request-timeout",
        hardening::request_timeout,
        ["Z4J_REQUEST_TIMEOUT_SECONDS"],
        Both
    ),
    case!(
        "hardening.cors",
        hardening::cors,
        [
            "Z4J_CORS_ORIGINS"[Default],
            "Z4J_CORS_ALLOW_CREDENTIALS"[Default]
        ],
        Both
    ),
    case!(
        "metrics.scrape",
        metrics::scrape_with_token,
        ["Z4J_METRICS_AUTH_TOKEN", "api.metrics"],
        Both
    ),
    case!(
        "metrics.public-and-disabled",
        metrics::public_and_disabled,
        ["Z4J_METRICS_PUBLIC", "Z4J_METRICS_ENABLED"[Default]],
        Both
    ),
    case!(
        "audit.chain-verifier",
        audit::chain_verifier,
        ["audit.chain-verifier"],
        Both
    ),
    case!(
        "audit.action-names",
        activity::action_names,
        ["audit.action-names"],
        Both
    ),
    case!(
        "audit.chain",
        audit::chain,
        ["audit.chain", "Z4J_PREVIOUS_SECRETS", "Z4J_SECRET"],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "account.me",
        account::me_and_profile,
        ["api.account.me"],
        Both
    ),
    case!(
        "account.sessions",
        account::sessions,
        ["api.account.sessions"],
        Both
    ),
    case!(
        "invitations.lifecycle",
        invitations::lifecycle,
        ["api.invitations"],
        Both
    ),
    case!(
        "invitations.throttle",
        invitations::throttle,
        ["api.invitations.throttle"],
        Both
    ),
    case!(
        "auth.password-reset",
        password_reset::flow,
        ["api.password-reset"],
        Both,
        feature = "email_loopback_opt_in"
    ),
    case!(
        "notifications.email-channel",
        password_reset::email_channel,
        ["api.notifications.email"],
        Both,
        feature = "email_loopback_opt_in"
    ),
    case!(
        "auth.password-reset-throttle",
        password_reset::throttle,
        ["api.password-reset.throttle"],
        Both,
        feature = "email_loopback_opt_in"
    ),
    case!(
        "audit.atomic",
        audit::atomic,
        ["audit.atomic"],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "audit.listing-and-export",
        audit::listing_and_export,
        ["api.audit", "Z4J_TASKS_EXPORT_MAX_ROWS"],
        Both
    ),
    case!(
        "campaign.audit-sweep-defaults",
        audit::sweep_defaults_campaign,
        [
            "Z4J_AUDIT_RETENTION_SWEEP_MAX_PER_PASS" [Default, Below, Above, Grey],
            "Z4J_AUDIT_RETENTION_SWEEP_INTERVAL_SECONDS" [Default, Lower, Upper, Grey]
        ],
        Both,
        feature = "testing_clock_offset"
    ),
    case!(
        "audit.retention-default",
        audit::retention_default,
        ["Z4J_AUDIT_RETENTION_DAYS" [Default, Below, Above, Grey]],
        Both,
        feature = "testing_clock_offset"
    ),
    case!(
        "audit.export-cap-default",
        audit::export_cap_default,
        ["Z4J_TASKS_EXPORT_MAX_ROWS" [Default, Below, Above, Grey]],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "audit.retention",
        audit::retention,
        [
            "Z4J_AUDIT_RETENTION_DAYS",
            "Z4J_AUDIT_RETENTION_SWEEP_INTERVAL_SECONDS",
            "Z4J_AUDIT_RETENTION_SWEEP_MAX_PER_PASS"
        ],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "mfa.defaults",
        mfa::defaults,
        [
            "Z4J_MFA_ENFORCE_FOR_ADMINS" [Default],
            "Z4J_MFA_RECOVERY_CODE_COUNT" [Default],
            "Z4J_MFA_REMEMBER_DEVICE_DAYS" [Default, Below, Above],
            "Z4J_MFA_VERIFICATION_RATE_PER_MIN" [Default, Below, Above],
            "Z4J_MFA_ENROLLMENT_GRACE_DAYS" [Default, Below, Above]
        ],
        Both,
        feature = "testing_clock_offset"
    ),
    case!(
        "mfa.enrol-and-verify",
        mfa::enrol_and_verify,
        [
            "api.mfa",
            "Z4J_MFA_RECOVERY_CODE_COUNT",
            "Z4J_MFA_REMEMBER_DEVICE_DAYS"
        ],
        Both
    ),
    case!(
        "mfa.account-care",
        mfa::account_care,
        ["api.mfa.devices", "api.change-password"],
        Both
    ),
    case!(
        "mfa.freshness",
        mfa::freshness,
        ["Z4J_MFA_VERIFICATION_TTL_SECONDS"],
        Both
    ),
    case!(
        "mfa.lock-and-throttle",
        mfa::lock_and_throttle,
        ["Z4J_MFA_VERIFICATION_RATE_PER_MIN", "api.mfa.lock"],
        Both
    ),
    case!(
        "mfa.enforcement",
        mfa::enforcement,
        [
            "Z4J_MFA_ENFORCE_FOR_ADMINS",
            "Z4J_MFA_ENROLLMENT_GRACE_DAYS"
        ],
        Both,
        feature = "testing_clock_offset"
    ),
    case!(
        "first-boot.password-min-length",
        first_boot::password_min_length,
        ["Z4J_PASSWORD_MIN_LENGTH"[Default]],
        Both
    ),
    case!(
        "hardening.admin-project-list-cap",
        hardening::admin_project_list_cap,
        ["Z4J_ADMIN_PROJECT_LIST_CAP"],
        Both
    ),
    case!(
        "hardening.allow-http-public-url",
        hardening::allow_http_public_url,
        ["Z4J_ALLOW_HTTP_PUBLIC_URL"[Default]],
        Both
    ),
    case!(
        "users.roles",
        users::roles,
        ["api.users", "api.roles"],
        Both
    ),
    case!(
        "users.enforce-for-all",
        users::enforce_for_all,
        [
            "Z4J_MFA_ENFORCE_FOR_ALL"[Default],
            "Z4J_MFA_ENFORCE_FOR_ADMINS"
        ],
        Both
    ),
    case!(
        "api-keys.scoped",
        api_keys::scoped_keys,
        ["api.api-keys"],
        Both
    ),
    case!(
        "faults.sqlite-disk-full",
        faults::sqlite_disk_full,
        ["faults.sqlite-disk-full", "protocol.ack-durable"],
        SqliteOnly
    ),
    case!(
        "faults.postgres-restart",
        faults::postgres_restart,
        ["faults.postgres-restart"],
        PostgresOnly
    ),
    case!(
        "faults.postgres-unreachable",
        faults::postgres_unreachable,
        ["faults.postgres-unreachable"],
        PostgresOnly
    ),
    case!(
        "hostile.nul-text",
        hostile::nul_text,
        ["hardening.nul-text"],
        Both
    ),
    case!(
        "hostile.frame-flood",
        hostile::frame_flood,
        ["hardening.frame-flood"],
        Both
    ),
    case!(
        "dashboard.idle-timeout",
        dashboard::idle_timeout,
        ["dashboard.idle-timeout", "Z4J_WS_IDLE_TIMEOUT_SECONDS" [Default, Lower, Upper]],
        Both
    ),
    case!(
        "dashboard.admission",
        dashboard::admission,
        ["dashboard.admission"],
        Both
    ),
    case!(
        "dashboard.subscribe",
        dashboard::subscribe,
        ["dashboard.subscribe"],
        Both
    ),
    case!(
        "dashboard.first-frame",
        dashboard::first_frame,
        ["dashboard.first-frame" [Lower, Upper]],
        Both
    ),
    case!(
        "dashboard.membership",
        dashboard::membership,
        ["dashboard.membership"],
        Both
    ),
    case!(
        "dashboard.user-cap",
        dashboard::user_cap,
        ["dashboard.user-cap" [Below, Above]],
        Both
    ),
    case!(
        "dashboard.topics",
        dashboard::topics,
        ["dashboard.topics"],
        Both
    ),
    case!(
        "dashboard.cross-replica",
        dashboard::cross_replica,
        ["dashboard.cross-replica"],
        PostgresOnly
    ),
    case!(
        "dashboard.sweeper-pushes",
        dashboard::sweeper_pushes,
        ["dashboard.sweeper-pushes"],
        Both
    ),
    case!(
        "dashboard.coalesce",
        dashboard::coalesce,
        ["dashboard.coalesce"],
        Both
    ),
    case!(
        "dashboard.session-close",
        dashboard::session_close,
        ["dashboard.session-close"],
        Both
    ),
    case!(
        "dashboard.home-summary",
        aggregates::home_summary,
        ["dashboard.home-summary"],
        Both
    ),
    case!(
        "dashboard.recent-failures",
        aggregates::recent_failures,
        ["dashboard.recent-failures"],
        Both
    ),
    case!(
        "dashboard.stats",
        aggregates::stats,
        ["dashboard.stats"],
        Both
    ),
    case!(
        "dashboard.version-check",
        aggregates::version_check,
        ["dashboard.version-check", "Z4J_VERSION_CHECK_URL"[Default]],
        Both
    ),
    case!(
        "dashboard.saved-views",
        saved_views::saved_views,
        ["dashboard.saved-views"],
        Both
    ),
    case!(
        "dashboard.activity",
        activity::activity,
        [
            "dashboard.activity.visibility",
            "dashboard.activity.parameters"
        ],
        Both
    ),
    case!(
        "dashboard.activity-budget",
        activity::activity_budget,
        ["dashboard.activity.budget"],
        Both
    ),
    case!(
        "dashboard.activity-keys",
        activity::activity_keys,
        ["dashboard.activity.sessions-only"],
        Both
    ),
    case!(
        "dashboard.issues",
        aggregates::issues,
        ["dashboard.issues"],
        Both
    ),
    case!(
        "dashboard.trends",
        aggregates::trends,
        ["dashboard.trends"],
        Both
    ),
    case!(
        "dashboard.queue-depths",
        aggregates::queue_depths,
        ["dashboard.queue-depths"],
        Both,
        feature = "queue_depth_history"
    ),
    case!(
        "dashboard.command-latency",
        commands::latency,
        ["dashboard.command-latency"],
        Both,
        feature = "command_latency"
    ),
    case!(
        "workers.queue-depth-retention",
        workers::queue_depth_retention,
        ["dashboard.queue-depths-retention"],
        Both,
        feature = "queue_depth_history"
    ),
    case!(
        "dashboard.pages",
        dashboard::pages,
        ["dashboard.pages"],
        Both,
        feature = "html_dashboard"
    ),
    case!(
        "dashboard.enrolment-pages",
        dashboard::enrolment_pages,
        ["dashboard.enrolment-pages"],
        Both,
        feature = "html_dashboard"
    ),
    case!(
        "dashboard.schedule-topic",
        dashboard::schedule_topic,
        ["dashboard.schedule-topic"],
        Both
    ),
    case!(
        "dashboard.schedule-pages",
        schedule_pages::schedule_pages,
        ["dashboard.schedule-pages"],
        Both,
        feature = "html_dashboard"
    ),
    case!(
        "dashboard.browser",
        dashboard::browser_flow,
        ["dashboard.browser"],
        SqliteOnly,
        feature = "html_dashboard"
    ),
    case!(
        "dashboard.browser-setup",
        dashboard::browser_setup,
        ["dashboard.browser"],
        SqliteOnly,
        feature = "html_dashboard"
    ),
    case!(
        "hostile.slow-clients",
        hostile::slow_clients,
        ["hardening.slow-clients"],
        Both
    ),
    case!(
        "hostile.address-flood",
        hostile::address_flood,
        ["hardening.address-flood"],
        Both
    ),
    case!(
        "gateway.slow-reader",
        gateway::slow_reader,
        ["Z4J_WS_INGEST_QUEUE_MAXSIZE", "protocol.backpressure"],
        Both
    ),
    case!(
        "gateway.task-text-filters",
        gateway::task_text_filters,
        ["api.task-text-filters"],
        Both
    ),
    case!(
        "gateway.redaction",
        gateway::redaction,
        [
            "protocol.redaction",
            "Z4J_REDACTION_EXTRA_KEY_PATTERNS"[Default]
        ],
        Both
    ),
    case!(
        "gateway.stale-prune",
        gateway::stale_prune,
        ["Z4J_AGENT_STALE_PRUNE_DAYS"],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "gateway.offline-sweep",
        gateway::offline_sweep,
        [
            "Z4J_AGENT_OFFLINE_TIMEOUT_SECONDS",
            "Z4J_AGENT_HEALTH_SWEEP_SECONDS"
        ],
        Both
    ),
    case!(
        "gateway.ack-waits-for-commit",
        gateway::ack_waits_for_commit,
        ["protocol.ack-durable"[Grey]],
        Both,
        feature = "schema_z4j_rs"
    ),
    case!(
        "gateway.kill-during-ingest",
        gateway::kill_during_ingest,
        ["protocol.ack-durable"],
        Both
    ),
    case!(
        "interop.z4j-bare-ws",
        interop::bare_ws,
        [
            "interop.z4j-bare-ws",
            "agent.brain_url",
            "agent.token",
            "agent.hmac_secret",
            "agent.project_id"
        ],
        Both
    ),
    case!(
        "interop.z4j-bare-longpoll-oversize",
        interop::bare_longpoll_oversize,
        [
            "interop.z4j-bare-longpoll-oversize",
            "gateway.longpoll-body-cap",
            "Z4J_MAX_PAYLOAD_SIZE_BYTES"[Default]
        ],
        SqliteOnly
    ),
    case!(
        "interop.z4j-bare-longpoll",
        interop::bare_longpoll,
        ["interop.z4j-bare-longpoll", "protocol.longpoll"],
        Both
    ),
    case!(
        "interop.brain-restart",
        interop::survives_restart,
        ["interop.brain-restart"],
        Both
    ),
    case!(
        "interop.rq-worker",
        interop::rq_worker,
        ["interop.rq-worker", "protocol.commands"],
        Both
    ),
    case!(
        "cli.version",
        cli::version,
        ["cli.version"],
        SqliteOnly,
        feature = "cli_commands"
    ),
    case!(
        "cli.allowed-hosts",
        cli::allowed_hosts,
        ["cli.allowed-hosts"],
        SqliteOnly,
        feature = "cli_commands"
    ),
    case!(
        "cli.account-recovery",
        cli::account_recovery,
        ["cli.account-recovery"],
        Both,
        feature = "cli_commands"
    ),
    case!(
        "cli.backup-restore",
        cli::backup_restore,
        ["cli.backup-restore"],
        Both,
        feature = "cli_commands"
    ),
    case!(
        "cli.reset-mfa",
        mfa::cli_reset,
        ["cli.reset-mfa"],
        Both,
        feature = "cli_commands"
    ),
    case!(
        "cli.reset-setup",
        first_boot::reset_setup,
        ["cli.reset-setup"],
        Both,
        feature = "cli_commands"
    ),
    case!(
        "cli.metrics-token-rotate",
        cli::metrics_token_rotate,
        ["cli.metrics-token-rotate"],
        SqliteOnly,
        feature = "cli_commands"
    ),
    case!(
        "server.health-and-readiness",
        server::health_and_readiness,
        ["server.health", "server.ready", "error.envelope"],
        Both
    ),
    case!(
        "server.default-bind",
        server::default_bind,
        ["Z4J_BIND_HOST"[Default], "Z4J_BIND_PORT"[Default]],
        Both
    ),
    case!(
        "server.json-logs-label",
        server::json_logs_label,
        [
            "Z4J_LOG_JSON"[Default],
            "Z4J_ENVIRONMENT"[Default],
            "Z4J_LOG_LEVEL"[Default]
        ],
        Both,
        feature = "json_logs_with_environment"
    ),
    case!(
        "server.graceful-shutdown",
        server::graceful_shutdown,
        ["server.graceful-shutdown"],
        PostgresOnly
    ),
    case!(
        "database.sqlite-default",
        database::sqlite_default,
        ["Z4J_DATABASE_URL", "Z4J_HOME"[Default]],
        SqliteOnly
    ),
    case!("config.home", config::home_moves, ["Z4J_HOME"], Both),
    case!(
        "database.wal-checkpoint-configured",
        database::wal_checkpoint_configured,
        ["Z4J_WAL_CHECKPOINT_INTERVAL_SECONDS"],
        SqliteOnly
    ),
    case!(
        "database.wal-checkpoint-default",
        database::wal_checkpoint_default,
        ["Z4J_WAL_CHECKPOINT_INTERVAL_SECONDS"[Default]],
        SqliteOnly
    ),
    case!(
        "database.postgres-documented-url",
        database::postgres_documented_url,
        ["Z4J_DATABASE_URL"],
        PostgresOnly
    ),
    case!(
        "database.auto-migrate",
        database::auto_migrate,
        ["Z4J_AUTO_MIGRATE"[Default]],
        Both
    ),
    case!(
        "database.require-db-ssl-loopback",
        database::require_db_ssl_loopback,
        ["Z4J_REQUIRE_DB_SSL"],
        PostgresOnly
    ),
    case!(
        "database.require-db-ssl",
        database::require_db_ssl,
        ["Z4J_REQUIRE_DB_SSL"[Default]],
        PostgresOnly
    ),
    case!(
        "database.lock-timeout",
        database::lock_timeout,
        ["Z4J_DB_LOCK_TIMEOUT_MS" [Default, Lower, Upper]],
        PostgresOnly
    ),
    case!(
        "database.statement-timeout",
        database::statement_timeout,
        ["Z4J_DB_STATEMENT_TIMEOUT_MS" [Default, Lower, Upper]],
        PostgresOnly
    ),
    case!(
        "database.connect-timeout",
        database::connect_timeout,
        ["Z4J_ASYNCPG_CONNECT_TIMEOUT" [Default, Lower, Upper]],
        PostgresOnly
    ),
    case!(
        "database.connection-lifetime",
        database::connection_lifetime,
        ["Z4J_DATABASE_MAX_INACTIVE_CONNECTION_LIFETIME_SECONDS" [Default, Lower, Upper]],
        PostgresOnly
    ),
    case!(
        "database.unreachable",
        database::unreachable,
        ["database.unreachable-refused"],
        PostgresOnly
    ),
    case!(
        "config.bad-values",
        config::bad_values,
        [
            "config.bad-value-refused",
            "Z4J_PUBLIC_URL",
            "Z4J_SESSION_COOKIE_SAMESITE",
            "Z4J_MFA_ENROLLMENT_GRACE_DAYS",
            "Z4J_MFA_RECOVERY_CODE_COUNT",
            "Z4J_MFA_REMEMBER_DEVICE_DAYS",
            "Z4J_FIRST_BOOT_TOKEN_TTL_SECONDS",
            "Z4J_FIRST_BOOT_ATTEMPTS_PER_IP"
        ],
        Both
    ),
    case!(
        "config.unknown-variable",
        config::unknown_variable,
        ["config.unknown-variable-warning"],
        Both
    ),
    case!(
        "config.precedence",
        config::precedence,
        ["config.precedence", "Z4J_HOME"[Default]],
        Both
    ),
    case!(
        "config.unwritable-home",
        config::unwritable_home,
        ["config.unwritable-home"],
        Both
    ),
    case!(
        "metrics.token-minted",
        metrics_token::minted_by_default,
        [
            "Z4J_METRICS_AUTH_TOKEN"[Default],
            "Z4J_METRICS_PUBLIC"[Default]
        ],
        Both
    ),
    case!(
        "metrics.token-cli",
        metrics_token::cli_prints_token,
        ["Z4J_METRICS_AUTH_TOKEN"[Default]],
        Both,
        feature = "cli_metrics_token"
    ),
    case!(
        "metrics.public-not-minted",
        metrics_token::public_not_minted,
        ["Z4J_METRICS_PUBLIC"],
        Both
    ),
    case!(
        "metrics.configured-not-minted",
        metrics_token::configured_not_minted,
        ["Z4J_METRICS_AUTH_TOKEN"],
        Both
    ),
    case!(
        "first-boot.secrets",
        first_boot::secrets_minted,
        [
            "first-boot.secrets-minted",
            "Z4J_SECRET",
            "Z4J_SESSION_SECRET"
        ],
        SqliteOnly
    ),
    case!(
        "first-boot.postgres-needs-secrets",
        first_boot::postgres_needs_secrets,
        ["first-boot.secrets-minted"],
        PostgresOnly
    ),
    case!(
        "first-boot.setup-flow",
        first_boot::setup_flow,
        [
            "first-boot.setup-url",
            "first-boot.setup-status",
            "first-boot.setup-complete",
            "Z4J_FIRST_BOOT_TOKEN_TTL_SECONDS"[Default],
            "server.version"
        ],
        Both
    ),
    case!(
        "first-boot.token-expiry",
        first_boot::token_expiry,
        ["Z4J_FIRST_BOOT_TOKEN_TTL_SECONDS"],
        Both
    ),
    case!(
        "first-boot.attempt-budget-default",
        first_boot::attempt_budget_default,
        ["Z4J_FIRST_BOOT_ATTEMPTS_PER_IP" [Default, Below, Above]],
        Both
    ),
    case!(
        "first-boot.attempt-budget-configured",
        first_boot::attempt_budget_configured,
        ["Z4J_FIRST_BOOT_ATTEMPTS_PER_IP"],
        Both
    ),
    case!(
        "first-boot.bootstrap-admin",
        first_boot::bootstrap_admin,
        ["Z4J_BOOTSTRAP_ADMIN_EMAIL", "Z4J_BOOTSTRAP_ADMIN_PASSWORD"],
        Both
    ),
];

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// A brain with the bootstrap admin (no login floor) and its session.
pub async fn admin_brain(ctx: &Ctx) -> Result<(Brain, crate::agent::Operator), String> {
    let mut env = crate::agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    let brain = ctx.start(&env).await?;
    let admin = crate::agent::login(&brain).await?;
    Ok((brain, admin))
}

/// A new non-admin user with `role` in the default project; its id.
pub async fn member_of_default(
    brain: &Brain,
    admin: &crate::agent::Operator,
    email: &str,
    password: &str,
    role: &str,
) -> Result<String, String> {
    let (status, u) = admin
        .send(
            brain,
            reqwest::Method::POST,
            "/api/v1/users",
            Some(serde_json::json!({"email": email, "password": password})),
        )
        .await?;
    ensure_eq(status, 201, &format!("create user: {u}"))?;
    let id = u["id"].as_str().unwrap_or_default().to_owned();
    let (status, m) = admin
        .send(
            brain,
            reqwest::Method::POST,
            "/api/v1/projects/default/memberships",
            Some(serde_json::json!({"user_id": id, "role": role})),
        )
        .await?;
    ensure_eq(status, 201, &format!("membership: {m}"))?;
    Ok(id)
}

/// A per-IP bucket's refusal: 429 with a `Retry-After` of 1..=`window`
/// seconds.
pub fn ensure_throttled(resp: &reqwest::Response, window: u64, what: &str) -> R {
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    ensure(
        status == 429 && retry.is_some_and(|r| (1..=window).contains(&r)),
        format!("{what}: {status}, Retry-After {retry:?}"),
    )
}

/// GET `path` → (status, JSON body or Null).
pub async fn get_json(
    brain: &Brain,
    path: &str,
    cookie: Option<&str>,
) -> Result<(u16, serde_json::Value), String> {
    let mut req = client().get(brain.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

pub use crate::runner::owned;

/// Fails with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl Into<String>) -> R {
    if cond {
        Ok(())
    } else {
        Err(msg.into())
    }
}

pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> R {
    ensure(got == want, format!("{what}: got {got:?}, want {want:?}"))
}

/// Starts a brain that is expected to refuse; returns (exit code, stderr).
pub async fn expect_refusal(
    ctx: &Arc<Ctx>,
    env: &[(&str, &str)],
) -> Result<(i32, String, Brain), String> {
    expect_refusal_observing(ctx, env, &[]).await
}

/// [`expect_refusal`] without the target's PostgreSQL settings named in
/// `observe` (the case observes their defaults).
pub async fn expect_refusal_observing(
    ctx: &Arc<Ctx>,
    env: &[(&str, &str)],
    observe: &[&'static str],
) -> Result<(i32, String, Brain), String> {
    let mut spec = crate::runner::spec(env);
    spec.expect_exit = true;
    spec.observe_defaults = observe.to_vec();
    let mut b = ctx.start_spec(spec).await?;
    let code = b.wait_exit(ctx.scaled(30.0)).await.ok_or_else(|| {
        format!(
            "expected the brain to refuse to start, but it kept running\n{}",
            b.output()
        )
    })?;
    // The refusal may be on either stream (the reference logs it to stdout).
    let err = format!("{}\n{}", b.stderr.text(), b.stdout.text());
    Ok((code, err, b))
}

/// The `KEY=VALUE` entries of a brain's `~/.z4j/secret.env`.
pub fn secret_env(brain: &Brain) -> Vec<(String, String)> {
    std::fs::read_to_string(brain.z4j_home().join("secret.env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One value of a brain's `secret.env`.
pub fn secret_env_value(brain: &Brain, key: &str) -> Option<String> {
    secret_env(brain)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Stops a brain and starts a new one on the same home.
pub async fn restart(ctx: &Ctx, brain: Brain) -> Result<Brain, String> {
    let home = brain.stop_keep_home().await;
    ctx.start_spec(crate::brain::StartSpec {
        home: Some(home),
        ..Default::default()
    })
    .await
}

/// A connection to database `name` holding ACCESS EXCLUSIVE on `users`
/// until it commits or rolls back: every request that reads users waits.
pub async fn lock_users(ctx: &Ctx, name: &str) -> Result<sqlx::PgConnection, String> {
    let plain = ctx.pg_plain_url(name).ok_or("no PostgreSQL URL")?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&plain)
        .await
        .map_err(|e| e.to_string())?;
    for sql in ["BEGIN", "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"] {
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(conn)
}

pub fn file_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}
