//! Cases, the context they run in, and running them per database.

use crate::brain::{self, Brain, StartSpec};
use crate::postgres::Provider;
use crate::target::Target;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    pub fn name(self) -> &'static str {
        match self {
            Database::Sqlite => "sqlite",
            Database::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dbs {
    Both,
    SqliteOnly,
    PostgresOnly,
}

impl Dbs {
    pub fn includes(self, db: Database) -> bool {
        matches!(
            (self, db),
            (Dbs::Both, _)
                | (Dbs::SqliteOnly, Database::Sqlite)
                | (Dbs::PostgresOnly, Database::Postgres)
        )
    }
}

pub type CaseFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One black-box test and the clauses it exercises.
pub struct Case {
    pub name: &'static str,
    pub clauses: &'static [&'static str],
    pub dbs: Dbs,
    /// A target feature the case needs; targets without it skip the case.
    pub feature: Option<&'static str>,
    pub run: fn(Arc<Ctx>) -> CaseFuture,
}

/// The secrets a PostgreSQL brain needs (replicas share them, so none are
/// minted for a shared database).
const SHARED_SECRETS: [(&str, &str); 2] = [
    ("Z4J_SECRET", "conformance-master-secret-0123456789abcdef"),
    (
        "Z4J_SESSION_SECRET",
        "conformance-session-secret-0123456789abcdef",
    ),
];

/// What a case gets: the target, its database, helpers.
pub struct Ctx {
    pub target: Arc<Target>,
    pub db: Database,
    pg: Option<Arc<Provider>>,
    /// Multiplies timing tolerances on slow machines.
    pub tolerance: f64,
    made: Mutex<Vec<String>>,
}

impl Ctx {
    /// A brain with a fresh home (and a fresh database on PostgreSQL).
    pub async fn start(&self, env: &[(&str, &str)]) -> Result<Brain, String> {
        self.start_spec(spec(env)).await
    }

    pub async fn start_spec(&self, mut spec: StartSpec) -> Result<Brain, String> {
        if self.db == Database::Postgres && !spec.env.iter().any(|(k, _)| k == "Z4J_DATABASE_URL") {
            let (_, url) = self.new_pg_database().await?;
            spec.env.push(("Z4J_DATABASE_URL".into(), url));
            for (k, v) in SHARED_SECRETS {
                if !spec.env.iter().any(|(e, _)| e == k) {
                    spec.env.push((k.into(), v.into()));
                }
            }
        }
        brain::start(&self.target, spec).await
    }

    /// Environment that keeps one database across several starts of a case
    /// (restarts, kills): on PostgreSQL a fresh database and the secrets
    /// replicas share, with its name; on SQLite nothing (the home holds it).
    pub async fn pinned_database(&self) -> Result<(Vec<(String, String)>, Option<String>), String> {
        if self.db != Database::Postgres {
            return Ok((Vec::new(), None));
        }
        let (name, url) = self.new_pg_database().await?;
        let mut env = vec![("Z4J_DATABASE_URL".to_owned(), url)];
        env.extend(
            SHARED_SECRETS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Ok((env, Some(name)))
    }

    /// A fresh PostgreSQL database: (name, `postgresql+asyncpg://` URL).
    pub async fn new_pg_database(&self) -> Result<(String, String), String> {
        let pg = self.pg.as_ref().ok_or("no PostgreSQL available")?;
        let (name, url) = pg.create_database().await?;
        if let Ok(mut m) = self.made.lock() {
            m.push(name.clone());
        }
        Ok((name, url))
    }

    /// A `postgres://` URL for the suite's own queries on a database.
    pub fn pg_plain_url(&self, name: &str) -> Option<String> {
        self.pg.as_ref().map(|p| p.plain_url(name))
    }

    pub fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64(secs * self.tolerance)
    }

    async fn cleanup(&self) {
        let names: Vec<String> = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        if let Some(pg) = &self.pg {
            for n in names {
                pg.drop_database(&n).await;
            }
        }
    }
}

pub fn spec(env: &[(&str, &str)]) -> StartSpec {
    StartSpec {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..StartSpec::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: &'static str,
    pub clauses: &'static [&'static str],
    pub db: Database,
    pub outcome: Outcome,
    pub duration: Duration,
}

pub struct Plan {
    pub target: Arc<Target>,
    pub databases: Vec<Database>,
    pub clause_filter: Option<String>,
    pub tolerance: f64,
    pub concurrency: usize,
    pub case_timeout: Duration,
}

/// Runs every selected case on every selected database.
pub async fn run(plan: &Plan, cases: &'static [Case]) -> Vec<CaseResult> {
    let pg: Result<Arc<Provider>, String> = if plan.databases.contains(&Database::Postgres) {
        Provider::discover().await.map(Arc::new)
    } else {
        Err("not requested".into())
    };
    match &pg {
        Ok(p) => eprintln!("conformance: PostgreSQL from {}", p.origin),
        Err(e) if plan.databases.contains(&Database::Postgres) => {
            eprintln!("conformance: PostgreSQL unavailable: {e}")
        }
        Err(_) => {}
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let sem = Arc::new(tokio::sync::Semaphore::new(plan.concurrency.max(1)));
    let mut handles = Vec::new();
    for case in cases {
        if let Some(f) = &plan.clause_filter {
            if !case.clauses.contains(&f.as_str()) {
                continue;
            }
        }
        for &db in &plan.databases {
            if !case.dbs.includes(db) {
                continue;
            }
            let skip = match (db, &pg) {
                (Database::Postgres, Err(e)) if !ci => Some(format!("no PostgreSQL: {e}")),
                _ => None,
            }
            .or_else(|| {
                case.feature
                    .filter(|f| !plan.target.has(f))
                    .map(|f| format!("target does not claim feature {f:?}"))
            });
            let ctx = Arc::new(Ctx {
                target: plan.target.clone(),
                db,
                pg: pg.as_ref().ok().cloned(),
                tolerance: plan.tolerance,
                made: Mutex::new(Vec::new()),
            });
            let pg_missing = db == Database::Postgres && pg.is_err();
            let sem = sem.clone();
            let timeout = plan.case_timeout;
            handles.push(tokio::spawn(async move {
                let mut started = Instant::now();
                let outcome = if let Some(reason) = skip {
                    Outcome::Skip(reason)
                } else if pg_missing {
                    Outcome::Fail(
                        "PostgreSQL is required under CI=true but none is reachable".into(),
                    )
                } else {
                    let _permit = sem.acquire().await;
                    started = Instant::now(); // time the case, not its wait for a slot
                                              // A panicking case is a failure of that case, not of the run.
                    let task = tokio::spawn((case.run)(ctx.clone()));
                    let r = tokio::time::timeout(timeout, task).await;
                    ctx.cleanup().await;
                    match r {
                        Ok(Ok(Ok(()))) => Outcome::Pass,
                        Ok(Ok(Err(e))) => Outcome::Fail(e),
                        Ok(Err(join)) => Outcome::Fail(format!("the case panicked: {join}")),
                        Err(_) => Outcome::Fail(format!("timed out after {} s", timeout.as_secs())),
                    }
                };
                let result = CaseResult {
                    case: case.name,
                    clauses: case.clauses,
                    db,
                    outcome,
                    duration: started.elapsed(),
                };
                let mark = match &result.outcome {
                    Outcome::Pass => "ok",
                    Outcome::Fail(_) => "FAIL",
                    Outcome::Skip(_) => "skip",
                };
                eprintln!(
                    "case {:<48} {:<8} {mark} ({:.1}s)",
                    case.name,
                    db.name(),
                    result.duration.as_secs_f64()
                );
                result
            }));
        }
    }
    let mut results = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => eprintln!("conformance: the runner itself failed: {e}"),
        }
    }
    results
}
