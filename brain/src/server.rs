//! `z4j serve`: start-up in order, serve, drain on SIGTERM/SIGINT.

use crate::app::AppState;
use crate::bootstrap::{admin, setup_token};
use crate::settings::{DatabaseTarget, Loaded, BRAIN_VERSION};
use crate::store::{self, SchemaStatus};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A start-up failure: one line for the operator and the exit status.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    pub exit_code: i32,
}

impl StartError {
    pub fn new(exit_code: i32, message: impl Into<String>) -> StartError {
        StartError {
            message: message.into(),
            exit_code,
        }
    }
}

/// Opens the database and brings its schema to this build's version (or
/// checks it, with `Z4J_AUTO_MIGRATE=false`).
pub async fn open_database(loaded: &Loaded) -> Result<store::Db, StartError> {
    let s = &loaded.settings;
    let db = store::connect(&loaded.database, s)
        .await
        .map_err(|e| StartError::new(1, e.to_string()))?;
    if s.auto_migrate {
        store::migrate(&db).await.map_err(|e| {
            StartError::new(
                1,
                format!("schema migration failed: {e} (set Z4J_AUTO_MIGRATE=false to run `z4j migrate` separately)"),
            )
        })?;
    } else {
        match store::schema_status(&db).await.map_err(|e| StartError::new(1, e.to_string()))? {
            SchemaStatus::Current => {}
            SchemaStatus::Empty => {
                return Err(StartError::new(
                    3,
                    "the database has no z4j schema and Z4J_AUTO_MIGRATE=false; run `z4j migrate` first",
                ))
            }
            SchemaStatus::Behind { applied, latest } => {
                return Err(StartError::new(
                    3,
                    format!("the database schema is at version {applied}, this build needs {latest}; run `z4j migrate` (Z4J_AUTO_MIGRATE=false)"),
                ))
            }
            SchemaStatus::Ahead { applied, latest } => {
                return Err(StartError::new(
                    3,
                    format!("the database schema is at version {applied}, newer than this build's {latest}; refusing to run an older brain on it"),
                ))
            }
        }
    }
    Ok(db)
}

pub async fn serve(loaded: Loaded, bootstrap_password: Option<String>) -> Result<(), StartError> {
    let s = &loaded.settings;
    if s.testing_clock_offset_seconds != 0 {
        crate::store::ts::set_clock_offset_seconds(s.testing_clock_offset_seconds);
        tracing::warn!(
            seconds = s.testing_clock_offset_seconds,
            "testing clock offset in force (Z4J_TESTING_CLOCK_OFFSET_SECONDS)"
        );
    }
    if let DatabaseTarget::Sqlite {
        path,
        is_default: true,
    } = &loaded.database
    {
        println!(
            "z4j: using SQLite at {} (set Z4J_DATABASE_URL for Postgres)",
            path.display()
        );
    }
    let db = open_database(&loaded).await?;
    first_boot(&db, &loaded, bootstrap_password).await?;

    let addr = format!("{}:{}", s.bind_host, s.bind_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| StartError::new(1, format!("cannot listen on {addr}: {e}")))?;
    let (alerts, alert_rx) = crate::notify::Alerts::channel();
    let (app, ingest_writer) = AppState::build(&loaded, db.clone(), alerts);
    let router = app.router();
    println!("z4j: serving on {addr}");
    tracing::info!(address = %addr, database = db.kind(), version = BRAIN_VERSION, "brain started");
    if let Some(m) = &s.mutant {
        tracing::warn!(mutant = %m, "MUTANT ACTIVE: a behaviour is broken on purpose (mutation testing)");
    }
    let grpc = start_scheduler_grpc(&app).await?;
    app.api.ready.store(true, Ordering::Release);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = crate::workers::spawn_all(
        crate::workers::Deps {
            settings: app.settings.clone(),
            db: db.clone(),
            commands: app.commands.clone(),
            alerts: app.alerts.clone(),
            metrics: app.metrics.clone(),
            schedules: app.schedules.clone(),
        },
        alert_rx,
        stop_rx.clone(),
    );
    tracing::info!(
        backend = app.commands.fleet().cluster.backend(),
        worker_id = %app.commands.fleet().cluster.worker_id,
        "command registry"
    );
    let mut stop_for_serve = stop_rx;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_for_serve.wait_for(|stop| *stop).await;
        })
        .await
    });
    shutdown_signal().await;
    // New fires are refused from the signal on; the scheduler's other
    // calls are served until the gRPC server stops after the HTTP side.
    if let Some(g) = &grpc {
        g.close_admission();
    }
    shutdown(app, server, workers, stop_tx, ingest_writer).await;
    if let Some(g) = grpc {
        g.stop().await;
    }
    db.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Agents first: their sockets close (1001) once what they sent is
/// processed, so every acknowledged event is committed before exit; then
/// in-flight requests get the request budget to finish, the workers stop,
/// and the ingest writer drains.
async fn shutdown(
    app: AppState,
    server: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    ingest_writer: JoinHandle<()>,
) {
    tracing::info!("shutdown requested; draining in-flight requests");
    app.api.ready.store(false, Ordering::Release);
    app.gateway.drain(Duration::from_secs(15)).await;
    let _ = stop_tx.send(true);
    let drain = Duration::from_secs(app.settings.request_timeout_seconds as u64 + 5);
    match tokio::time::timeout(drain, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error during shutdown"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!(seconds = drain.as_secs(), "drain window elapsed; closing"),
    }
    for w in workers {
        let _ = w.await;
    }
    // The ingest writer ends when the last handle to the ingestor is gone.
    drop(app);
    if tokio::time::timeout(Duration::from_secs(10), ingest_writer)
        .await
        .is_err()
    {
        tracing::warn!("ingest writer still busy at shutdown");
    }
}

/// The scheduler's gRPC server when enabled. A failure stops start-up,
/// except in dev, where the brain runs on without it (scheduler spec §1.2).
async fn start_scheduler_grpc(
    app: &AppState,
) -> Result<Option<crate::scheduler_grpc::Running>, StartError> {
    let s = &app.settings;
    let trigger: Vec<&str> = [
        ("Z4J_SCHEDULER_TRIGGER_URL", &s.scheduler_trigger_url),
        (
            "Z4J_SCHEDULER_TRIGGER_TLS_CERT",
            &s.scheduler_trigger_tls_cert,
        ),
        (
            "Z4J_SCHEDULER_TRIGGER_TLS_KEY",
            &s.scheduler_trigger_tls_key,
        ),
        ("Z4J_SCHEDULER_TRIGGER_TLS_CA", &s.scheduler_trigger_tls_ca),
    ]
    .into_iter()
    .filter(|(_, v)| v.as_deref().is_some_and(|v| !v.is_empty()))
    .map(|(k, _)| k)
    .collect();
    if !trigger.is_empty() {
        // Decision Y6: "fire now" is dispatched by the brain itself.
        tracing::warn!(variables = ?trigger, "accepted and ignored: the brain never dials the scheduler's trigger listener");
    }
    if !s.scheduler_grpc_enabled {
        return Ok(None);
    }
    match crate::scheduler_grpc::start(s.clone(), app.schedules.clone()).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if s.environment == "dev" => {
            tracing::error!(error = %e, "CRITICAL: scheduler gRPC server not started; running without it (dev)");
            eprintln!("z4j: scheduler gRPC not started: {e}");
            Ok(None)
        }
        Err(e) => Err(StartError::new(1, e)),
    }
}

async fn first_boot(
    db: &store::Db,
    loaded: &Loaded,
    bootstrap_password: Option<String>,
) -> Result<(), StartError> {
    let s = &loaded.settings;
    let db_err = |e: store::StoreError| StartError::new(1, e.to_string());
    if store::users::count(db).await.map_err(db_err)? > 0 {
        store::setup::delete_tokens(db).await.map_err(db_err)?;
        return Ok(());
    }
    if let (Some(email), Some(password)) = (&s.bootstrap_admin_email, &bootstrap_password) {
        match admin::provision(db, s, email, password)
            .await
            .map_err(|e| StartError::new(1, e.to_string()))?
        {
            admin::Outcome::Provisioned(email) => {
                tracing::info!(email = %email, "z4j auto-bootstrap complete");
                return Ok(());
            }
            admin::Outcome::Refused(reason) => {
                tracing::error!(reason = %reason, "bootstrap admin refused; falling back to the setup URL");
            }
        }
    }
    let (token, expires) = setup_token::mint(db, s).await.map_err(db_err)?;
    eprint!(
        "{}",
        setup_token::banner(&setup_token::public_base(s), &token, expires)
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
