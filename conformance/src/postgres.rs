//! PostgreSQL for the suite: `Z4J_TEST_POSTGRES_URL` if set, else a
//! throw-away container when a Docker engine answers, else the local server
//! on 127.0.0.1:5432. Each brain start gets a fresh database, dropped after.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use std::process::Command;
use std::time::Duration;

pub const LOCAL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug)]
pub struct Provider {
    /// Admin connection string (a maintenance database).
    admin_url: String,
    admin: PgPool,
    /// A container we started, removed on drop.
    container: Option<String>,
    pub origin: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(id) = &self.container {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

async fn open(url: &str) -> Result<PgPool, String> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(url)))
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn docker_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn start_container() -> Result<(String, String), String> {
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--rm",
            "-e",
            "POSTGRES_HOST_AUTH_METHOD=trust",
            "-p",
            "127.0.0.1::5432",
            "postgres:16-alpine",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let port = Command::new("docker")
        .args(["port", &id, "5432/tcp"])
        .output()
        .map_err(|e| e.to_string())?;
    let mapping = String::from_utf8_lossy(&port.stdout).trim().to_owned();
    let host_port = mapping.rsplit(':').next().unwrap_or("").to_owned();
    let url = format!("postgres://postgres@127.0.0.1:{host_port}/postgres");
    for _ in 0..60 {
        if open(&url).await.is_ok() {
            return Ok((id, url));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    Err("the PostgreSQL container did not become ready in 30 s".into())
}

impl Provider {
    pub async fn discover() -> Result<Provider, String> {
        if let Ok(url) = std::env::var("Z4J_TEST_POSTGRES_URL") {
            let admin = open(&url).await?;
            return Ok(Provider {
                admin_url: url,
                admin,
                container: None,
                origin: "Z4J_TEST_POSTGRES_URL".into(),
            });
        }
        if docker_available() {
            match start_container().await {
                Ok((id, url)) => {
                    let admin = open(&url).await?;
                    return Ok(Provider { admin_url: url, admin, container: Some(id), origin: "container".into() });
                }
                Err(e) => eprintln!("conformance: a Docker engine answered but the container failed ({e}); trying the local server"),
            }
        }
        let admin = open(LOCAL_DEFAULT).await?;
        Ok(Provider {
            admin_url: LOCAL_DEFAULT.into(),
            admin,
            container: None,
            origin: "local 127.0.0.1:5432".into(),
        })
    }

    /// Creates a fresh database; returns its name and a URL in the
    /// documented `postgresql+asyncpg://` form.
    pub async fn create_database(&self) -> Result<(String, String), String> {
        let name = format!("z4jconf_{:016x}", rand_u64());
        self.admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .map_err(|e| format!("CREATE DATABASE failed: {e}"))?;
        let mut u = url::Url::parse(&self.admin_url).map_err(|e| e.to_string())?;
        u.set_path(&format!("/{name}"));
        let plain = u.to_string();
        let documented = plain.replacen("postgres://", "postgresql+asyncpg://", 1);
        Ok((name, documented))
    }

    /// A plain `postgres://` URL of a database, for the suite's own queries.
    pub fn plain_url(&self, name: &str) -> String {
        let mut u = url::Url::parse(&self.admin_url)
            .unwrap_or_else(|_| url::Url::parse(LOCAL_DEFAULT).expect("the default URL parses"));
        u.set_path(&format!("/{name}"));
        u.to_string()
    }

    /// Drops `name` and the copies `z4j restore` keeps beside a database
    /// (`<name>_pre_restore_<stamp>`, `<name>_restore_<pid>`), which the
    /// suite did not create but would otherwise leave behind.
    pub async fn drop_database(&self, name: &str) {
        let copies: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)",
        )
        .bind(format!("{name}_"))
        .fetch_all(&self.admin)
        .await
        .unwrap_or_default();
        for db in std::iter::once(name.to_owned()).chain(copies) {
            let _ = self
                .admin
                .execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
                .await;
        }
    }
}

fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
