//! The real Python agents (z4j-bare, z4j-rq from PyPI) for interop cases:
//! a virtualenv the suite creates once (or `Z4J_CONFORMANCE_VENV`), and the
//! helper scripts in `conformance/python/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

/// The exact agent releases this suite interoperates with.
pub const PACKAGES: &[&str] = &[
    "z4j-bare==1.13.0",
    "z4j-rq==1.13.0",
    "rq",
    "z4j-scheduler==1.13.0",
];

static VENV: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

fn default_venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("conformance-venv")
}

/// The venv's python, creating the venv and installing [`PACKAGES`] on
/// first use.
pub async fn python() -> Result<PathBuf, String> {
    VENV.get_or_init(|| async {
        let dir = std::env::var_os("Z4J_CONFORMANCE_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(default_venv);
        let packages: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
        let made = dir.clone();
        tokio::task::spawn_blocking(move || ensure_venv(&made, "python3", &packages))
            .await
            .map_err(|e| e.to_string())??;
        Ok(dir.join("bin").join("python"))
    })
    .await
    .clone()
}

/// The virtualenv of a Python target (`[venv]` in its target file), made
/// on first use under `target/conformance-targets/<name>` (or
/// `Z4J_CONFORMANCE_TARGET_VENV`) and reused while its package list holds.
pub fn target_venv(name: &str, spec: &crate::target::Venv) -> Result<PathBuf, String> {
    let dir = std::env::var_os("Z4J_CONFORMANCE_TARGET_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("conformance-targets")
                .join(name)
        });
    ensure_venv(&dir, &spec.python, &spec.packages)?;
    Ok(dir)
}

/// Creates `dir` as a virtualenv with `packages` unless a marker says it
/// already holds exactly them (blocking: pip takes a while).
fn ensure_venv(dir: &Path, python: &str, packages: &[String]) -> Result<(), String> {
    let marker = dir.join(".z4j-packages");
    let wanted = packages.join(" ");
    let py = dir.join("bin").join("python");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && py.exists() {
        return Ok(());
    }
    eprintln!(
        "conformance: creating {} with {wanted} (first use)",
        dir.display()
    );
    let blocking = |cmd: &mut std::process::Command| {
        let what = format!("{cmd:?}");
        succeeded(&what, cmd.output())
    };
    blocking(
        std::process::Command::new(python)
            .args(["-m", "venv"])
            .arg(dir),
    )?;
    blocking(
        std::process::Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
    )?;
    std::fs::write(&marker, wanted).map_err(|e| format!("{}: {e}", marker.display()))
}

/// A finished command's outcome, with its stderr when it failed.
fn succeeded(what: &str, out: std::io::Result<std::process::Output>) -> Result<(), String> {
    let out = out.map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whether a Redis server answers on 127.0.0.1:6379.
pub async fn redis_available() -> bool {
    tokio::net::TcpStream::connect("127.0.0.1:6379")
        .await
        .is_ok()
}

/// A running Python process whose stdout lines are collected.
pub struct Proc {
    pub child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proc {
    pub async fn spawn(
        script_args: &[&str],
        env: &[(String, String)],
        cwd: &Path,
    ) -> Result<Proc, String> {
        let py = python().await?;
        let mut cmd = Command::new(py);
        cmd.args(script_args)
            .envs(env.iter().cloned())
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start python: {e}"))?;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = lines.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(pipe).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    if let Ok(mut s) = sink.lock() {
                        s.push(l);
                    }
                }
            });
        }
        Ok(Proc { child, lines })
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until a line containing `needle` was printed.
    pub async fn wait_line(
        &self,
        needle: &str,
        timeout: std::time::Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.output().iter().any(|l| l.contains(needle)) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "python never printed {needle:?}; output:\n{}",
                    self.output().join("\n")
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("stdin closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stdin.flush().await.map_err(|e| e.to_string())
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
