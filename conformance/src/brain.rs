//! Starting and stopping a brain process with a fresh home, a free port and
//! the environment a test chooses; capturing what it prints.

use crate::target::Target;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Output captured from a pipe by a background thread.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>, Arc<std::sync::atomic::AtomicBool>);

impl Captured {
    fn spawn_reader(pipe: impl Read + Send + 'static) -> Captured {
        let c = Captured::default();
        let sink = c.0.clone();
        let eof = c.1.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.extend_from_slice(&buf[..n]);
                }
            }
            eof.store(true, std::sync::atomic::Ordering::Release);
        });
        c
    }

    /// Waits (bounded) until the writer closed its end, so nothing printed
    /// before exit is missed.
    async fn wait_eof(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.1.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default()
    }
}

/// A free TCP port on 127.0.0.1, released before use.
///
/// Taken below the kernel's ephemeral range, never from it: a port the OS
/// picked for `bind(0)` and released goes back to the pool every outgoing
/// connection draws from, and under the hostile cases' connection churn one
/// of those took a reserved port before the process meant for it could
/// bind (a CI failure: z4j-scheduler's ops port "address already in use").
/// A per-process counter, started at an offset from the pid, keeps
/// concurrent cases (and concurrent suite runs) apart; each port is checked
/// free before it is handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const BASE: u32 = 10_000;
    if low > BASE + 1_000 {
        let span = low - BASE;
        let start = std::process::id().wrapping_mul(7919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = BASE + (start + n) % span;
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// What a test asks for.
#[derive(Debug, Clone, Default)]
pub struct StartSpec {
    pub env: Vec<(String, String)>,
    /// Do not set Z4J_BIND_HOST / Z4J_BIND_PORT (to observe the defaults).
    pub default_bind: bool,
    /// Do not wait for `/api/v1/health` (the test expects a refusal).
    pub expect_exit: bool,
    /// Reuse this home instead of a fresh one.
    pub home: Option<Home>,
    /// Listen on this port instead of a fresh one (restarts that agents
    /// must find again).
    pub port: Option<u16>,
    /// Entries of the target's `postgres_env` not to add (the case observes
    /// that variable's default).
    pub observe_defaults: Vec<&'static str>,
}

/// A home directory, kept alive (temporary ones are removed when the last
/// holder drops).
#[derive(Debug, Clone)]
pub struct Home {
    pub path: PathBuf,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl Home {
    pub fn at(path: PathBuf) -> Home {
        Home { path, _dir: None }
    }
}

pub struct Brain {
    child: Option<Child>,
    /// The brain's own process group (its pid at spawn): whatever it forks
    /// (the reference's multiprocessing helpers) is stopped with it.
    group: i32,
    pub port: u16,
    pub base_url: String,
    pub home: PathBuf,
    pub stdout: Captured,
    pub stderr: Captured,
    dir: Option<Arc<tempfile::TempDir>>,
}

impl Brain {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The brain process's resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))
            .ok()?
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// `~/.z4j` of this brain.
    pub fn z4j_home(&self) -> PathBuf {
        self.home.join(".z4j")
    }

    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// Waits (bounded) until the captured output contains `needle`; the
    /// reader threads may lag the brain's own writes by a scheduling slice.
    pub async fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal (SIGTERM by default) without waiting.
    pub fn signal(&self, sig: i32) {
        if self.child.is_some() {
            // SAFETY: kill(2) on the process group we spawned; no memory is
            // touched.
            unsafe {
                libc::kill(-self.group, sig);
            }
        }
    }

    /// Waits for the process to exit; `None` on timeout. Async: cases share
    /// the suite's runtime, so waiting must not block a worker thread.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    self.stdout.wait_eof(Duration::from_secs(5)).await;
                    self.stderr.wait_eof(Duration::from_secs(5)).await;
                    return Some(status.code().unwrap_or(-1));
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => return None,
            }
        }
    }

    /// Stops the brain and hands back its home for a restart.
    pub async fn stop_keep_home(mut self) -> Home {
        self.stop().await;
        Home {
            path: self.home.clone(),
            _dir: self.dir.take(),
        }
    }

    /// SIGKILL (no chance to flush anything) and hand back the home.
    pub async fn kill_keep_home(mut self) -> Home {
        self.kill();
        Home {
            path: self.home.clone(),
            _dir: self.dir.take(),
        }
    }

    /// SIGTERM, then SIGKILL after 10 s. Returns the exit status.
    pub async fn stop(&mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(10)).await;
        if code.is_none() {
            self.kill();
        }
        code
    }

    pub fn kill(&mut self) {
        // SAFETY: as in `signal`; SIGKILL for the whole group, children
        // that outlived their parent included.
        unsafe {
            libc::kill(-self.group, libc::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Brain {
    fn drop(&mut self) {
        self.kill();
    }
}

fn base_env(home: &Path) -> Vec<(String, String)> {
    let mut env = vec![("HOME".to_owned(), home.display().to_string())];
    for k in ["PATH", "LANG", "LC_ALL", "TZ", "RUST_BACKTRACE"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_owned(), v));
        }
    }
    env
}

/// Starts the target's brain and waits until `/api/v1/health` answers.
pub async fn start(target: &Target, spec: StartSpec) -> Result<Brain, String> {
    // A free port can be taken by another case's brain between the probe and
    // the bind; such a start is retried on a new port (unless the port was
    // chosen by the test).
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start_once(target, spec.clone()).await {
            Err(e)
                if attempt < 4
                    && spec.port.is_none()
                    && !spec.default_bind
                    && e.contains("cannot listen on") =>
            {
                continue
            }
            other => return other,
        }
    }
}

async fn start_once(target: &Target, spec: StartSpec) -> Result<Brain, String> {
    let (dir, home) = match &spec.home {
        Some(h) => (h._dir.clone(), h.path.clone()),
        None => {
            let d = tempfile::Builder::new()
                .prefix("z4j-conformance-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary home: {e}"))?;
            let home = d.path().to_owned();
            (Some(Arc::new(d)), home)
        }
    };
    let port = if spec.default_bind {
        7700
    } else {
        spec.port.unwrap_or_else(free_port)
    };
    let mut env = base_env(&home);
    if !spec.default_bind {
        env.push(("Z4J_BIND_HOST".into(), "127.0.0.1".into()));
        env.push(("Z4J_BIND_PORT".into(), port.to_string()));
    }
    env.extend(target.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // `{home}` in a value is this start's home (mutants of Z4J_HOME).
    let home_text = home.display().to_string();
    env.extend(
        spec.env
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("{home}", &home_text))),
    );
    let mut cmd = Command::new(&target.command[0]);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(&target.command[1..])
        .env_clear()
        .envs(env)
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", target.command))?;
    let stdout = child
        .stdout
        .take()
        .map(Captured::spawn_reader)
        .unwrap_or_default();
    let stderr = child
        .stderr
        .take()
        .map(Captured::spawn_reader)
        .unwrap_or_default();
    let group = child.id() as i32;
    let mut brain = Brain {
        child: Some(child),
        group,
        port,
        base_url: format!("http://127.0.0.1:{port}"),
        home,
        stdout,
        stderr,
        dir,
    };
    if spec.expect_exit {
        return Ok(brain);
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(target.startup_timeout_seconds);
    loop {
        if let Some(code) = brain.wait_exit(Duration::ZERO).await {
            return Err(format!(
                "the brain exited with status {code} during start-up\n{}",
                brain.output()
            ));
        }
        let ok = client
            .get(brain.url("/api/v1/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(brain);
        }
        if Instant::now() > deadline {
            brain.kill();
            return Err(format!(
                "the brain did not answer /api/v1/health within {} s\n{}",
                target.startup_timeout_seconds,
                brain.output()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Output of a one-shot CLI command.
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `target.cli + args` with the given home and environment.
pub fn run_cli(
    target: &Target,
    home: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> Result<CliOutput, String> {
    run_cli_input(target, home, env, args, None)
}

/// `run_cli` with `input` written to the command's stdin.
pub fn run_cli_input(
    target: &Target,
    home: &Path,
    env: &[(String, String)],
    args: &[&str],
    input: Option<&str>,
) -> Result<CliOutput, String> {
    if target.cli.is_empty() {
        return Err("the target declares no `cli` command".into());
    }
    let mut all_env = base_env(home);
    all_env.extend(env.iter().cloned());
    let out = Command::new(&target.cli[0])
        .args(&target.cli[1..])
        .args(args)
        .env_clear()
        .envs(all_env)
        .current_dir(home)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                use std::io::Write;
                stdin.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
        .map_err(|e| format!("cannot run {:?}: {e}", target.cli))?;
    Ok(CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
