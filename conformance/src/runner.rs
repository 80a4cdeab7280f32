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

/// A case error starting with this is a skip, not a failure: the case found
/// that it cannot judge this target (and says why).
pub const SKIP_PREFIX: &str = "skip: ";

pub type CaseFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What a case asserts about one clause: its strength, shown per clause in
/// the report. A clause a case names with no strength is exercised black
/// box at a configured value (or, for a behaviour clause, as documented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assert {
    /// Observed with the variable unset: the documented default in force.
    Default,
    /// A value just under a limit passes (or a time just under it has not
    /// yet elapsed).
    Below,
    /// A value just over a limit fails (or the time has elapsed).
    Above,
    /// A timing is not shorter than documented.
    Lower,
    /// A timing is not longer than documented (plus a tolerance).
    Upper,
    /// Observed through the implementation's own storage or internals
    /// rather than its documented surface.
    Grey,
}

impl Assert {
    pub fn letter(self) -> char {
        match self {
            Assert::Default => 'D',
            Assert::Below => 'B',
            Assert::Above => 'A',
            Assert::Lower => 'L',
            Assert::Upper => 'U',
            Assert::Grey => 'G',
        }
    }

    /// The letters of `asserts`, in order, each once.
    pub fn letters(asserts: impl IntoIterator<Item = Assert>) -> String {
        let mut all: Vec<Assert> = asserts.into_iter().collect();
        all.sort();
        all.dedup();
        all.iter().map(|a| a.letter()).collect()
    }
}

/// One black-box test and the clauses it exercises.
pub struct Case {
    pub name: &'static str,
    pub clauses: &'static [&'static str],
    /// Per clause, what the case asserts about it.
    pub asserts: &'static [(&'static str, &'static [Assert])],
    pub dbs: Dbs,
    /// A target feature the case needs; targets without it skip the case.
    pub feature: Option<&'static str>,
    pub run: fn(Arc<Ctx>) -> CaseFuture,
}

impl Case {
    /// A long campaign (`campaign.*`, an hour or more): never part of a
    /// default run or a clause filter; run when named (`--case NAME`) or
    /// as a group (`--case campaign`), results recorded in
    /// conformance/README.md.
    pub fn is_campaign(&self) -> bool {
        self.name.starts_with("campaign.")
    }

    /// What this case asserts about `clause`.
    pub fn asserts_on(&self, clause: &str) -> &'static [Assert] {
        self.asserts
            .iter()
            .find(|(c, _)| *c == clause)
            .map(|(_, a)| *a)
            .unwrap_or(&[])
    }
}

/// The secrets a PostgreSQL brain needs (replicas share them, so none are
/// minted for a shared database).
pub const SHARED_SECRETS: [(&str, &str); 2] = [
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
    /// Mutation testing: variables added to every start of the target's
    /// command where the case leaves them unset.
    mutation: Vec<(String, String)>,
    /// Failures a case attributed to one of its clauses while going on
    /// with the others.
    clause_failures: Mutex<Vec<(String, String)>>,
}

impl Ctx {
    /// Records that `clause` failed and lets the case check its other
    /// clauses; the case's remaining clauses keep their own verdicts.
    pub fn fail_clause(&self, clause: &str, message: impl Into<String>) {
        if let Ok(mut f) = self.clause_failures.lock() {
            f.push((clause.to_owned(), message.into()));
        }
    }

    fn take_clause_failures(&self) -> Vec<(String, String)> {
        self.clause_failures
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }

    /// A brain with a fresh home (and a fresh database on PostgreSQL).
    pub async fn start(&self, env: &[(&str, &str)]) -> Result<Brain, String> {
        self.start_spec(spec(env)).await
    }

    /// A brain with exactly `env` (after the suite's own), on `home` or a
    /// fresh one.
    pub async fn start_env(
        &self,
        env: Vec<(String, String)>,
        home: Option<crate::brain::Home>,
    ) -> Result<Brain, String> {
        self.start_spec(StartSpec {
            env,
            home,
            ..StartSpec::default()
        })
        .await
    }

    /// The suite's admin on a database kept across restarts, plus `extra`:
    /// the environment to (re)start with and the PostgreSQL database name.
    pub async fn pinned_admin_env(
        &self,
        extra: &[(&str, &str)],
    ) -> Result<(Vec<(String, String)>, Option<String>), String> {
        let (mut env, name) = self.pinned_database().await?;
        env.extend(owned(&crate::agent::admin_env()));
        env.extend(owned(extra));
        Ok((env, name))
    }

    pub async fn start_spec(&self, mut spec: StartSpec) -> Result<Brain, String> {
        let url_of_case = spec
            .env
            .iter()
            .find(|(k, _)| k == "Z4J_DATABASE_URL")
            .map(|(_, v)| v.clone());
        let extra: Vec<(String, String)> = match url_of_case {
            // A fresh database with the secrets and the target's needs.
            None if self.db == Database::Postgres => {
                let (_, url) = self.new_pg_database().await?;
                spec.env.push(("Z4J_DATABASE_URL".into(), url));
                self.postgres_secrets()
            }
            // The case's own URL that is not SQLite's (its own choice of
            // secrets): only what the target needs to run on PostgreSQL at
            // all, so that a malformed URL is judged as itself, not refused
            // for a missing PostgreSQL-only setting first.
            Some(url) if !url.starts_with("sqlite") => {
                self.target.postgres_env.clone().into_iter().collect()
            }
            _ => Vec::new(),
        };
        for (k, v) in extra {
            let observed = spec.observe_defaults.contains(&k.as_str());
            if !observed && !spec.env.iter().any(|(e, _)| *e == k) {
                spec.env.push((k, v));
            }
        }
        // A mutant replaces a default only: what the case set stays.
        for (k, v) in &self.mutation {
            // The suite chooses the address unless the case observes it.
            let suite_bind = !spec.default_bind && (k == "Z4J_BIND_HOST" || k == "Z4J_BIND_PORT");
            if !suite_bind
                && !spec.env.iter().any(|(e, _)| e == k)
                && !self.target.env.contains_key(k)
            {
                spec.env.push((k.clone(), v.clone()));
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
        env.extend(self.postgres_secrets());
        Ok((env, Some(name)))
    }

    /// What a brain on a provisioned PostgreSQL database is given: the
    /// shared secrets and the target's `postgres_env`.
    fn postgres_secrets(&self) -> Vec<(String, String)> {
        SHARED_SECRETS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain(self.target.postgres_env.clone())
            .collect()
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

/// Environment pairs as the brain is given them.
pub fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn spec(env: &[(&str, &str)]) -> StartSpec {
    StartSpec {
        env: owned(env),
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
    pub asserts: &'static [(&'static str, &'static [Assert])],
    pub db: Database,
    pub outcome: Outcome,
    pub duration: Duration,
    /// Clauses the case failed individually (then `outcome` is a failure
    /// naming them, and its other clauses passed).
    pub clause_failures: Vec<(String, String)>,
}

/// The limit on one campaign case-run (`campaign.*`).
const CAMPAIGN_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

pub struct Plan {
    pub target: Arc<Target>,
    pub databases: Vec<Database>,
    pub clause_filter: Option<String>,
    pub case_filter: Option<String>,
    pub tolerance: f64,
    pub concurrency: usize,
    pub case_timeout: Duration,
}

/// One case-run to do: a case on a database, under a mutation (none
/// outside `mutate`; see [`Ctx::mutation`]).
pub struct Job {
    pub case: &'static Case,
    pub db: Database,
    pub mutation: Vec<(String, String)>,
}

/// The cases a plan selects (filters), on every selected database.
pub fn select(plan: &Plan, cases: &'static [Case]) -> Vec<Job> {
    let mut jobs = Vec::new();
    for case in cases {
        if let Some(f) = &plan.clause_filter {
            if !case.clauses.contains(&f.as_str()) {
                continue;
            }
        }
        if let Some(f) = &plan.case_filter {
            let group = case.name.split('.').next().unwrap_or_default();
            if case.name != f && group != f {
                continue;
            }
        } else if case.is_campaign() {
            continue;
        }
        for &db in &plan.databases {
            if case.dbs.includes(db) {
                jobs.push(Job {
                    case,
                    db,
                    mutation: Vec::new(),
                });
            }
        }
    }
    jobs
}

/// Runs every selected case on every selected database.
pub async fn run(plan: &Plan, cases: &'static [Case]) -> Vec<CaseResult> {
    execute(plan, select(plan, cases)).await
}

/// Runs jobs, at most `plan.concurrency` at once; results in job order.
pub async fn execute(plan: &Plan, jobs: Vec<Job>) -> Vec<CaseResult> {
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
    let ci = crate::under_ci();
    let sem = Arc::new(tokio::sync::Semaphore::new(plan.concurrency.max(1)));
    let mut handles = Vec::new();
    for Job { case, db, mutation } in jobs {
        let mutant = match mutation.first() {
            Some((k, v)) => format!(" [mutant {k}={v}]"),
            None => String::new(),
        };
        {
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
                mutation,
                clause_failures: Mutex::new(Vec::new()),
            });
            let pg_missing = db == Database::Postgres && pg.is_err();
            let sem = sem.clone();
            // A campaign is measured in hours; the case limit is for cases.
            let timeout = if case.is_campaign() {
                plan.case_timeout.max(CAMPAIGN_TIMEOUT)
            } else {
                plan.case_timeout
            };
            handles.push(tokio::spawn(async move {
                let mut started = Instant::now();
                let mut clause_failures = Vec::new();
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
                    let ended = match r {
                        Ok(Ok(ended)) => ended,
                        Ok(Err(join)) => Err(format!("the case panicked: {join}")),
                        Err(_) => Err(format!("timed out after {} s", timeout.as_secs())),
                    };
                    // Only a case that ran to its end attributes failures; one
                    // that stopped fails all its clauses.
                    let attributed = ctx.take_clause_failures();
                    match ended {
                        Ok(()) => match attributed
                            .iter()
                            .find(|(c, _)| !case.clauses.contains(&c.as_str()))
                        {
                            // A bug in the case: it fails as a whole.
                            Some((c, _)) => Outcome::Fail(format!(
                                "the case attributed a failure to {c}, which it does not declare"
                            )),
                            None if attributed.is_empty() => Outcome::Pass,
                            None => {
                                clause_failures = attributed;
                                Outcome::Fail(
                                    clause_failures
                                        .iter()
                                        .map(|(c, m)| format!("[{c}] {m}"))
                                        .collect::<Vec<_>>()
                                        .join("; "),
                                )
                            }
                        },
                        Err(e) => match e.strip_prefix(SKIP_PREFIX) {
                            Some(why) => Outcome::Skip(why.to_owned()),
                            None => Outcome::Fail(e),
                        },
                    }
                };
                let result = CaseResult {
                    case: case.name,
                    clauses: case.clauses,
                    asserts: case.asserts,
                    db,
                    outcome,
                    duration: started.elapsed(),
                    clause_failures,
                };
                let mark = match &result.outcome {
                    Outcome::Pass => "ok",
                    Outcome::Fail(_) => "FAIL",
                    Outcome::Skip(_) => "skip",
                };
                eprintln!(
                    "case {:<48} {:<8} {mark} ({:.1}s){mutant}",
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
