//! What an agent's session advertises, and which engine commands it may
//! therefore receive (http-api 5.4: 422 when the engine or action is not
//! advertised; 409 for a retry the engine cannot run without overrides).

use super::deliver::RETRY_MARKER;
use crate::store::agents::Agent;
use crate::store::commands::Action;
use serde_json::Value as Json;

pub const ENGINE_NAME_MAX: usize = 40;

/// Engines whose broker keeps the original job, so a retry needs no
/// operator-supplied arguments (stored arguments are redacted).
pub const NATIVE_RETRY_ENGINES: &[&str] = &["celery", "rq"];

/// Actions that re-run work and need the adapter's retry contract.
pub const RETRY_FAMILY: &[Action] = &[Action::RetryTask, Action::BulkRetry];

/// Capability token an agent must list for an engine to receive the action.
fn token_for(action: Action) -> Option<&'static str> {
    match action {
        Action::RetryTask | Action::CancelTask | Action::RequeueDeadLetter | Action::BulkRetry => {
            Some(action.as_str())
        }
        _ => None,
    }
}

/// Why `engine` is not an adapter name (`^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$`).
pub fn engine_name_error(engine: &str) -> Option<String> {
    let mut chars = engine.chars();
    let shaped = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && engine.len() <= ENGINE_NAME_MAX;
    (!shaped).then(|| {
        format!(
            "engine must be an adapter name of at most {ENGINE_NAME_MAX} characters \
             (letters, digits, '.', '_' and '-'), got {engine:?}"
        )
    })
}

/// Whether the agent ever told the brain its inventory (a WebSocket
/// `hello`); long-poll agents have not, and are not refused here: their
/// poll admits each command against what they state then.
fn reports_inventory(a: &Agent) -> bool {
    a.last_connect_at.is_some()
        || a.engine_adapters
            .0
            .as_array()
            .is_some_and(|e| !e.is_empty())
}

fn strings(v: Option<&Json>) -> Vec<&str> {
    v.and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

/// Why `agent` may not receive `action` for `engine`, or `None`.
fn dispatch_refusal(agent: &Agent, engine: &str, action: Action) -> Option<String> {
    if let Some(e) = engine_name_error(engine) {
        return Some(e);
    }
    let Some(token) = token_for(action) else {
        return Some(format!(
            "action {:?} is not an engine command",
            action.as_str()
        ));
    };
    if !reports_inventory(agent) {
        return None;
    }
    let mut engines = strings(Some(&agent.engine_adapters.0));
    if !engines.contains(&engine) {
        engines.sort_unstable();
        return Some(format!(
            "no connected agent advertises engine {engine:?}: agent {:?} advertises {engines:?}",
            agent.name
        ));
    }
    let mut actions = strings(agent.capabilities.0.get(engine));
    if !actions.contains(&token) {
        actions.sort_unstable();
        return Some(format!(
            "agent {:?} does not advertise {token:?} for engine {engine:?}; it advertises {actions:?}",
            agent.name
        ));
    }
    if RETRY_FAMILY.contains(&action) && !actions.contains(&RETRY_MARKER) {
        return Some(format!(
            "agent {:?} advertises {token:?} for engine {engine:?} but its adapter does not \
             attest the safe retry contract ({RETRY_MARKER}); upgrade the adapter",
            agent.name
        ));
    }
    None
}

/// Why a command may not be issued to `agent` (the HTTP layer maps these
/// to 422 and 409).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The engine or action is not advertised by the agent.
    NotAdvertised(String),
    /// A retry on an engine without native retry and without both override
    /// fields: the stored arguments are redacted, so the agent would
    /// re-submit the wrong ones.
    NeedsOverrides,
}

/// The capability rules of an engine command (`requirement` is the engine
/// the request names); `payload` is the command's parameters.
pub fn refusal(agent: &Agent, engine: &str, action: Action, payload: &Json) -> Option<Refusal> {
    if let Some(reason) = dispatch_refusal(agent, engine, action) {
        return Some(Refusal::NotAdvertised(reason));
    }
    let overrides =
        payload.get("override_args").is_some() && payload.get("override_kwargs").is_some();
    (action == Action::RetryTask && !NATIVE_RETRY_ENGINES.contains(&engine) && !overrides)
        .then_some(Refusal::NeedsOverrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names() {
        for ok in ["rq", "celery", "a.b_c-d", &"x".repeat(40)] {
            assert_eq!(engine_name_error(ok), None, "{ok}");
        }
        for bad in ["", "-rq", "r q", "rq/", &"x".repeat(41), "é"] {
            assert!(engine_name_error(bad).is_some(), "{bad}");
        }
    }
}
