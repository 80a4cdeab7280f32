//! Request bodies and query strings from the fuzzer, sent through the whole
//! router of a real brain: every write route's typed request model, the
//! long-poll events body, and the read routes' query parameters. No input
//! may produce a server error (500, or a 503 other than an offline agent)
//! or an error answer outside the envelopes.
//!
//! Input: byte 0 picks the route, byte 1 its path parameters, the rest is
//! the body (write routes) or the query string (read routes).
#![no_main]

use axum::http::Method;
use libfuzzer_sys::fuzz_target;

#[path = "common/brain.rs"]
mod brain;
use brain::{As, Brain};

/// Routes that end the admin's session or reach outside the process are
/// left out (logout, password change, channel tests, the version check).
const ROUTES: &[(Method, &str, As)] = &[
    (Method::POST, "/api/v1/auth/login", As::Nobody),
    (Method::PATCH, "/api/v1/auth/me", As::Admin),
    (Method::POST, "/api/v1/projects", As::Admin),
    (Method::PATCH, "/api/v1/projects/{slug}", As::Admin),
    (Method::POST, "/api/v1/projects/{slug}/agents", As::Admin),
    (
        Method::POST,
        "/api/v1/projects/{slug}/commands/{command}",
        As::Admin,
    ),
    (
        Method::POST,
        "/api/v1/projects/{slug}/invitations",
        As::Admin,
    ),
    (Method::POST, "/api/v1/invitations/preview", As::Nobody),
    (Method::POST, "/api/v1/invitations/accept", As::Nobody),
    (Method::POST, "/api/v1/auth/mfa/enroll-complete", As::Admin),
    (Method::POST, "/api/v1/auth/mfa/verify", As::Admin),
    (
        Method::PATCH,
        "/api/v1/auth/mfa/trusted-devices/{id}",
        As::Admin,
    ),
    (
        Method::POST,
        "/api/v1/projects/{slug}/notifications/channels",
        As::Admin,
    ),
    (
        Method::PATCH,
        "/api/v1/projects/{slug}/notifications/channels/{channel}",
        As::Admin,
    ),
    (
        Method::POST,
        "/api/v1/projects/{slug}/notifications/defaults",
        As::Admin,
    ),
    (
        Method::POST,
        "/api/v1/auth/password-reset/request",
        As::Nobody,
    ),
    (
        Method::POST,
        "/api/v1/auth/password-reset/confirm",
        As::Nobody,
    ),
    (
        Method::POST,
        "/api/v1/projects/{slug}/saved-views",
        As::Admin,
    ),
    (
        Method::PUT,
        "/api/v1/projects/{slug}/saved-views/{view}",
        As::Admin,
    ),
    (Method::POST, "/api/v1/projects/{slug}/schedules", As::Admin),
    (
        Method::PATCH,
        "/api/v1/projects/{slug}/schedules/{schedule}",
        As::Admin,
    ),
    (Method::POST, "/api/v1/setup/complete", As::Nobody),
    (Method::POST, "/api/v1/users", As::Admin),
    (Method::PATCH, "/api/v1/users/{user}", As::Admin),
    (Method::POST, "/api/v1/users/{user}/password", As::Admin),
    (
        Method::POST,
        "/api/v1/projects/{slug}/memberships",
        As::Admin,
    ),
    (Method::POST, "/api/v1/api-keys", As::Admin),
    (Method::POST, "/api/v1/agent/events", As::Agent),
    // Read routes: the fuzzer's bytes are the query string.
    (Method::GET, "/api/v1/projects/{slug}/tasks", As::Admin),
    (Method::GET, "/api/v1/projects/{slug}/events", As::Admin),
    (Method::GET, "/api/v1/projects/{slug}/commands", As::Admin),
    (Method::GET, "/api/v1/projects/{slug}/trends", As::Admin),
    (Method::GET, "/api/v1/projects/{slug}/queue-depths", As::Admin),
    (Method::GET, "/api/v1/projects/{slug}/issues", As::Admin),
    (Method::GET, "/api/v1/projects/{slug}/audit", As::Admin),
    (
        Method::GET,
        "/api/v1/projects/{slug}/schedules/runs",
        As::Admin,
    ),
    (
        Method::GET,
        "/api/v1/projects/{slug}/notifications/deliveries",
        As::Admin,
    ),
    (Method::GET, "/api/v1/activity", As::Admin),
    (Method::GET, "/api/v1/home/recent-failures", As::Admin),
    (Method::GET, "/api/v1/agent/commands", As::Agent),
];

const SLUGS: &[&str] = &["default", "default", "no-such-project", "%20x"];
const COMMANDS: &[&str] = &[
    "retry-task",
    "cancel-task",
    "requeue-dead-letter",
    "bulk-retry",
    "purge-queue",
    "restart-worker",
    "pool-resize",
    "add-consumer",
    "cancel-consumer",
    "rate-limit",
    "no-such-command",
];
const OTHER_IDS: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "%7B%7D",
];

fn fill(template: &str, choice: u8, brain: &Brain) -> String {
    let mut uri = template.replace("{slug}", SLUGS[usize::from(choice & 3)]);
    let pick = usize::from(choice >> 2);
    uri = uri.replace("{command}", COMMANDS[pick % COMMANDS.len()]);
    for (name, id) in &brain.fixtures {
        let value = if pick % 4 == 3 {
            OTHER_IDS[pick % OTHER_IDS.len()]
        } else {
            id.as_str()
        };
        uri = uri.replace(name, value);
    }
    uri.replace("{id}", OTHER_IDS[pick % OTHER_IDS.len()])
}

/// The bytes as a query string a client could send: anything outside
/// the characters a URI may carry is percent-encoded.
fn query_of(bytes: &[u8]) -> String {
    let mut q = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            q.push(char::from(b));
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    q
}

fuzz_target!(|data: &[u8]| {
    let [route, choice, rest @ ..] = data else {
        return;
    };
    let brain = Brain::get();
    let (method, template, who) = &ROUTES[usize::from(*route) % ROUTES.len()];
    let path = fill(template, *choice, brain);
    let answer = if *method == Method::GET {
        brain.send(
            method,
            // The long poll would hold each input up to a minute: no wait
            // (a repeated parameter's last value wins).
            &format!(
                "{path}?{}{}",
                query_of(rest),
                if path.ends_with("/agent/commands") {
                    "&wait=0"
                } else {
                    ""
                }
            ),
            *who,
            Vec::new(),
        )
    } else {
        brain.send(method, &path, *who, rest.to_vec())
    };
    if let Some(answer) = answer {
        brain::check(&format!("{method} {path}"), &answer);
    }
});
