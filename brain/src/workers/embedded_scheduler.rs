//! The embedded scheduler (scheduler spec §6): `<python> -m z4j_scheduler
//! serve` as a supervised child on the loopback mTLS PKI the brain minted.
//! One replica supervises (a session advisory lock on PostgreSQL; the
//! others stand by and take over when it goes); a child that exits is
//! restarted after a jittered, doubling backoff until the attempts run
//! out; shutdown is SIGTERM, then SIGKILL after the grace window.

use crate::settings::{ChildEnv, Settings};
use crate::store::{leader, Db};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The advisory lock's name (the reference's, so mixed fleets agree).
const LOCK_NAME: &str = "embedded_scheduler_supervisor";
/// How often a standby replica asks for the lock again (decision Y10).
pub const STANDBY_RETRY: Duration = Duration::from_secs(5);
/// The backoff cap and floor (§6.4).
const BACKOFF_CAP_SECONDS: f64 = 60.0;
const BACKOFF_FLOOR_SECONDS: f64 = 0.1;
/// After SIGKILL, how long the child gets to be reaped before it is
/// reported leaked.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Longer output lines are cut (a child cannot grow the brain's memory).
const MAX_LINE_BYTES: usize = 8 * 1024;

crate::text_enum! {
    /// Where the supervision stands (shown on `GET /api/v1/schedulers`).
    pub enum State {
        /// Another replica holds the supervisor lock.
        Standby = "standby",
        Running = "running",
        /// The child exited; it is started again after the backoff.
        Restarting = "restarting",
        /// The attempts ran out: no child until the brain restarts.
        Failed = "failed",
        /// Shut down with the brain.
        Stopped = "stopped",
    }
}

/// What the supervisor reports.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Snapshot {
    pub state: State,
    /// Exits counted against `Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS`
    /// (never reset while the brain runs).
    pub exits: u32,
    pub pid: Option<u32>,
}

/// A shared view of the supervision, read by the fleet page.
#[derive(Clone)]
pub struct Status(Arc<Mutex<Snapshot>>);

impl Default for Status {
    fn default() -> Status {
        Status(Arc::new(Mutex::new(Snapshot {
            state: State::Standby,
            exits: 0,
            pid: None,
        })))
    }
}

impl Status {
    pub fn get(&self) -> Snapshot {
        match self.0.lock() {
            Ok(s) => *s,
            Err(p) => *p.into_inner(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

/// The child's command line and environment.
#[derive(Clone)]
pub struct Launch {
    pub python: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("python", &self.python)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// Where the child finds the brain and its certificates.
pub struct Wiring<'a> {
    pub grpc_port: u16,
    pub http_port: u16,
    pub client_cert: &'a str,
    pub client_key: &'a str,
    pub ca: &'a str,
    pub hostname: &'a str,
}

/// `[-m, z4j_scheduler, *argv]` and the environment of §6.3: the inherited
/// names, three defaults the operator may override, and the wiring, which
/// is always the brain's.
pub fn launch(settings: &Settings, inherited: &ChildEnv, w: &Wiring<'_>) -> Launch {
    let mut env = inherited.0.clone();
    let mut default = |k: &str, v: String| {
        if !env.iter().any(|(name, _)| name == k) {
            env.push((k.to_owned(), v));
        }
    };
    default("Z4J_SCHEDULER_ENVIRONMENT", settings.environment.clone());
    default("Z4J_SCHEDULER_BIND_HOST", "127.0.0.1".to_owned());
    default(
        "Z4J_SCHEDULER_INSTANCE_ID",
        format!("{}-embedded", w.hostname),
    );
    let fixed = [
        (
            "Z4J_SCHEDULER_BRAIN_GRPC_URL",
            format!("127.0.0.1:{}", w.grpc_port),
        ),
        (
            "Z4J_SCHEDULER_BRAIN_REST_URL",
            format!("http://127.0.0.1:{}", w.http_port),
        ),
        ("Z4J_SCHEDULER_TLS_CERT", w.client_cert.to_owned()),
        ("Z4J_SCHEDULER_TLS_KEY", w.client_key.to_owned()),
        ("Z4J_SCHEDULER_TLS_CA", w.ca.to_owned()),
        ("Z4J_SCHEDULER_LEADER_BACKEND", "single".to_owned()),
    ];
    env.retain(|(k, _)| !fixed.iter().any(|(f, _)| f == k));
    env.extend(fixed.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let mut args = vec!["-m".to_owned(), "z4j_scheduler".to_owned()];
    args.extend(settings.embedded_scheduler_argv.0.iter().cloned());
    Launch {
        python: settings.embedded_scheduler_python.clone(),
        args,
        env,
    }
}

/// The delay before restart number `count` (1-based):
/// `min(60, base·2^(count−1)) × jitter`, kept within [0.1, 60] s; `jitter`
/// is drawn from [0.7, 1.3] (§6.4).
pub fn backoff(base_seconds: f64, count: u32, jitter: f64) -> Duration {
    let doubled = base_seconds * 2f64.powi(count.saturating_sub(1).min(30) as i32);
    let secs = (doubled.min(BACKOFF_CAP_SECONDS) * jitter)
        .clamp(BACKOFF_FLOOR_SECONDS, BACKOFF_CAP_SECONDS);
    Duration::from_secs_f64(secs)
}

fn jitter() -> f64 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 0.7..=1.3)
}

/// Checks, before anything starts, that the interpreter runs and can
/// import `z4j_scheduler` with the child's environment. One line naming
/// the variable otherwise.
pub async fn check_interpreter(python: &str, env: &ChildEnv) -> Result<(), String> {
    let var = "Z4J_EMBEDDED_SCHEDULER_PYTHON";
    let run = Command::new(python)
        .args(["-c", "import z4j_scheduler"])
        .env_clear()
        .envs(env.0.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| format!("{var}: {python} did not import z4j_scheduler within 60 s"))?
        .map_err(|e| format!("{var}: cannot run {python:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!(
        "{var}: {python} cannot import z4j_scheduler ({}); install z4j-scheduler==1.13.0 into that interpreter's environment or point {var} at one that has it",
        last.trim()
    ))
}

/// This host's name, for the default instance id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A running supervision; [`Supervisor::stop`] ends it and the child.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// How the loop is tuned.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_attempts: u32,
    pub backoff_seconds: f64,
    pub grace: Duration,
}

impl Policy {
    pub fn of(s: &Settings) -> Policy {
        Policy {
            max_attempts: s.embedded_scheduler_restart_max_attempts.max(0) as u32,
            backoff_seconds: s.embedded_scheduler_restart_backoff_seconds,
            grace: Duration::from_secs_f64(s.embedded_scheduler_shutdown_grace_seconds),
        }
    }
}

impl Supervisor {
    pub fn start(db: Db, launch: Launch, policy: Policy, status: Status) -> Supervisor {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(db, launch, policy, status, stop_rx));
        Supervisor { stop, task }
    }

    /// Stops supervising, then SIGTERM, SIGKILL after the grace window
    /// (§6.5); returns once the child is gone and the lock released.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Sleeps `d`; false when the stop came first.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let slept = tokio::select! {
        () = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    slept && !*stop.borrow()
}

async fn supervise(
    db: Db,
    launch: Launch,
    policy: Policy,
    status: Status,
    mut stop: watch::Receiver<bool>,
) {
    let mut announced = false;
    let lease = loop {
        match leader::try_lead(&db, LOCK_NAME).await {
            Ok(Some(lease)) => break lease,
            Ok(None) => {
                if !announced {
                    tracing::info!(
                        "embedded scheduler: another replica supervises it; standing by"
                    );
                    announced = true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "embedded scheduler: cannot ask for the supervisor lock")
            }
        }
        if !pause(STANDBY_RETRY, &mut stop).await {
            status.update(|s| s.state = State::Stopped);
            return;
        }
    };
    run_child(&launch, policy, &status, &mut stop).await;
    lease.release().await;
    status.update(|s| {
        s.state = State::Stopped;
        s.pid = None;
    });
}

/// Spawns, watches and restarts the child until stopped or out of
/// attempts.
async fn run_child(
    launch: &Launch,
    policy: Policy,
    status: &Status,
    stop: &mut watch::Receiver<bool>,
) {
    let mut exits: u32 = 0;
    loop {
        let mut child = match spawn(launch) {
            Ok(c) => c,
            Err(e) => {
                // A launch that failed gives its attempt back (§6.4).
                let d = backoff(policy.backoff_seconds, exits.max(1), jitter());
                tracing::error!(error = %e, retry_in_seconds = d.as_secs_f64(), "embedded scheduler: cannot start the child");
                status.update(|s| s.state = State::Restarting);
                if !pause(d, stop).await {
                    return;
                }
                continue;
            }
        };
        let pid = child.id();
        status.update(|s| {
            s.state = State::Running;
            s.pid = pid;
        });
        tracing::info!(pid, "embedded scheduler started");
        let exited = tokio::select! {
            r = child.wait() => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(exited) = exited else {
            terminate(&mut child, policy.grace).await;
            return;
        };
        // Any exit nobody asked for is a crash, exit 0 included.
        exits += 1;
        let how = match &exited {
            Ok(st) => st
                .code()
                .map(|c| format!("exit status {c}"))
                .or_else(|| st.signal().map(|s| format!("signal {s}")))
                .unwrap_or_else(|| "unknown status".into()),
            Err(e) => format!("cannot wait for it: {e}"),
        };
        status.update(|s| {
            s.exits = exits;
            s.pid = None;
        });
        if policy.max_attempts == 0 || exits > policy.max_attempts {
            status.update(|s| s.state = State::Failed);
            tracing::error!(
                exits,
                max_attempts = policy.max_attempts,
                last = %how,
                "CRITICAL: embedded scheduler gave up after its restart attempts (Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS); schedules do not fire until the brain restarts"
            );
            let _ = stop.wait_for(|s| *s).await.map(|_| ());
            return;
        }
        let d = backoff(policy.backoff_seconds, exits, jitter());
        status.update(|s| s.state = State::Restarting);
        tracing::warn!(pid, last = %how, attempt = exits, retry_in_seconds = d.as_secs_f64(), "embedded scheduler exited; restarting");
        if !pause(d, stop).await {
            return;
        }
    }
}

fn spawn(l: &Launch) -> std::io::Result<Child> {
    let mut cmd = Command::new(&l.python);
    cmd.args(&l.args)
        .env_clear()
        .envs(l.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C reaches the brain
        // only, which stops the child in order.
        .process_group(0);
    // SAFETY: prctl(2) only, between fork and exec. If the brain dies
    // without stopping it (SIGKILL), the child gets SIGTERM instead of
    // living on as an orphan. The signal follows the forking thread, a
    // runtime worker that lives as long as the brain.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(out, "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward(err, "stderr"));
    }
    Ok(child)
}

/// SIGTERM to the child's group; SIGKILL when the grace window is over.
async fn terminate(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return;
    };
    let group = pid as i32;
    tracing::info!(
        pid,
        grace_seconds = grace.as_secs_f64(),
        "embedded scheduler: SIGTERM"
    );
    // SAFETY: kill(2) on the process group this supervisor created.
    unsafe {
        libc::kill(-group, libc::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    tracing::warn!(
        pid,
        "embedded scheduler still running after the grace window; SIGKILL"
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    if tokio::time::timeout(KILL_WAIT, child.wait()).await.is_err() {
        tracing::error!(
            pid,
            "embedded scheduler did not exit after SIGKILL; process leaked"
        );
    }
}

/// Whether a line may carry key or certificate material.
fn sensitive(line: &str) -> bool {
    line.contains("Z4J_SCHEDULER_TLS_KEY")
        || line.contains("Z4J_SCHEDULER_TLS_CERT")
        || line.contains("BEGIN CERTIFICATE")
        || (line.contains("BEGIN") && line.contains("PRIVATE KEY"))
}

/// Re-logs the child's output line by line, redacting key material.
async fn forward(mut pipe: impl AsyncRead + Unpin, stream: &'static str) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let emit = |line: &[u8], cut: bool| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if sensitive(text) {
            tracing::info!(target: "z4j.embedded_scheduler", stream, "[a line with key or certificate material was redacted]");
        } else {
            tracing::info!(target: "z4j.embedded_scheduler", stream, truncated = cut, "{text}");
        }
    };
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&line, cut);
                line.clear();
                cut = false;
            } else if line.len() < MAX_LINE_BYTES {
                line.push(b);
            } else {
                cut = true;
            }
        }
    }
    if !line.is_empty() {
        emit(&line, cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_to_the_cap_with_jitter() {
        let at = |count, j| backoff(2.0, count, j).as_secs_f64();
        assert_eq!(at(1, 1.0), 2.0);
        assert_eq!(at(2, 1.0), 4.0);
        assert_eq!(at(5, 1.0), 32.0);
        assert_eq!(at(6, 1.0), 60.0);
        assert_eq!(at(40, 1.0), 60.0);
        assert!((at(1, 0.7) - 1.4).abs() < 1e-9);
        assert!((at(2, 1.3) - 5.2).abs() < 1e-9);
        // Capped after the jitter too, and never under the floor.
        assert_eq!(at(6, 1.3), 60.0);
        assert_eq!(backoff(0.1, 1, 0.7).as_secs_f64(), 0.1);
    }

    #[test]
    fn the_child_environment_is_filtered_defaulted_and_wired() {
        let home = tempfile::tempdir().unwrap();
        let input = crate::settings::LoadInput {
            env: vec![
                ("Z4J_HOME".into(), home.path().display().to_string()),
                ("Z4J_ENVIRONMENT".into(), "staging".into()),
            ],
            cwd: None,
            cli: Vec::new(),
        };
        let s = crate::settings::load(&input).unwrap().settings;
        let inherited = ChildEnv::inherited(&[
            ("PATH".into(), "/bin".into()),
            ("Z4J_DATABASE_URL".into(), "postgres://secret".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "x".into()),
            ("LC_TIME".into(), "C".into()),
            ("Z4J_SCHEDULER_INSTANCE_ID".into(), "mine".into()),
            ("Z4J_SCHEDULER_TLS_CERT".into(), "/operator/cert".into()),
        ]);
        let l = launch(
            &s,
            &inherited,
            &Wiring {
                grpc_port: 7701,
                http_port: 7700,
                client_cert: "/pki/c.crt",
                client_key: "/pki/c.key",
                ca: "/pki/ca.crt",
                hostname: "host1",
            },
        );
        let get = |k: &str| {
            let v: Vec<&str> = l
                .env
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(v.len() <= 1, "{k} set twice");
            v.first().copied()
        };
        assert_eq!(l.args, ["-m", "z4j_scheduler", "serve"]);
        assert_eq!(l.python, "python3");
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("LC_TIME"), Some("C"));
        assert_eq!(get("Z4J_DATABASE_URL"), None);
        assert_eq!(get("AWS_SECRET_ACCESS_KEY"), None);
        assert_eq!(get("Z4J_SCHEDULER_INSTANCE_ID"), Some("mine"));
        assert_eq!(get("Z4J_SCHEDULER_ENVIRONMENT"), Some("staging"));
        assert_eq!(get("Z4J_SCHEDULER_BIND_HOST"), Some("127.0.0.1"));
        assert_eq!(get("Z4J_SCHEDULER_TLS_CERT"), Some("/pki/c.crt"));
        assert_eq!(get("Z4J_SCHEDULER_BRAIN_GRPC_URL"), Some("127.0.0.1:7701"));
        assert_eq!(
            get("Z4J_SCHEDULER_BRAIN_REST_URL"),
            Some("http://127.0.0.1:7700")
        );
        assert_eq!(get("Z4J_SCHEDULER_LEADER_BACKEND"), Some("single"));
        assert!(format!("{l:?}").contains("PATH") && !format!("{l:?}").contains("/bin"));
    }

    #[test]
    fn key_material_is_recognised() {
        assert!(sensitive("-----BEGIN PRIVATE KEY-----"));
        assert!(sensitive("-----BEGIN EC PRIVATE KEY-----"));
        assert!(sensitive("x -----BEGIN CERTIFICATE----- y"));
        assert!(sensitive("Z4J_SCHEDULER_TLS_KEY=/p"));
        assert!(!sensitive("scheduler started"));
    }
}
