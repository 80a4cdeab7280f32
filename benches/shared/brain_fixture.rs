//! What the in-process ingest workloads share (the criterion bench and the
//! instruction-count example): settings for a brain home with the event
//! budget lifted, and a migrated database with one project and one agent.
//! Included by path, because the brain is only a dev-dependency of the
//! benches and so out of reach of their library.

use uuid::Uuid;
use z4j_brain::settings::{self, LoadInput, Settings};
use z4j_brain::store::{self, agents, projects, Db};

pub fn settings_in(dir: &std::path::Path) -> Result<Settings, String> {
    let input = LoadInput {
        env: vec![
            ("Z4J_HOME".into(), dir.display().to_string()),
            // The workloads measure the write path, not the budget.
            ("Z4J_RATELIMIT_EVENTS_PER_SECOND".into(), "100000000".into()),
        ],
        cwd: None,
        cli: Vec::new(),
    };
    settings::load(&input)
        .map(|l| l.settings)
        .map_err(|e| format!("{e:?}"))
}

/// Migrates `db` and adds the project `bench` and its agent: (project, agent).
pub async fn project_and_agent(db: &Db) -> Result<(Uuid, Uuid), String> {
    store::migrate(db).await.map_err(|e| e.to_string())?;
    let project = projects::create(
        db,
        &projects::Fields {
            slug: "bench".into(),
            name: "bench".into(),
            description: None,
            environment: "production".into(),
            timezone: "UTC".into(),
            settings: serde_json::json!({}),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let agent = agents::mint(db, project.id, "bench-agent", "not-a-real-token-hash")
        .await
        .map_err(|e| e.to_string())?;
    Ok((project.id, agent.id))
}

/// A fresh migrated database with the project `bench` and its agent.
#[allow(dead_code)] // icount opens its SQLite file itself
pub struct Fresh {
    pub db: Db,
    pub project: Uuid,
    pub agent: Uuid,
    /// The PostgreSQL database, for the caller to drop.
    pub pg: Option<(z4j_conformance::postgres::Provider, String)>,
}

/// SQLite in `dir`, or with `pg` a new database on the PostgreSQL the
/// conformance suite finds.
#[allow(dead_code)]
pub async fn fresh(dir: &std::path::Path, s: &Settings, pg: bool) -> Result<Fresh, String> {
    use z4j_brain::settings::DatabaseTarget;
    let (target, pg) = if pg {
        let provider = z4j_conformance::postgres::Provider::discover().await?;
        let (name, _) = provider.create_database().await?;
        let url = provider.plain_url(&name);
        (DatabaseTarget::Postgres { url }, Some((provider, name)))
    } else {
        let path = dir.join("z4j.db");
        let target = DatabaseTarget::Sqlite {
            path,
            is_default: false,
        };
        (target, None)
    };
    let db = store::connect(&target, s)
        .await
        .map_err(|e| e.to_string())?;
    let (project, agent) = project_and_agent(&db).await?;
    Ok(Fresh {
        db,
        project,
        agent,
        pg,
    })
}
