//! `z4j serve`: start-up in order, serve, drain on SIGTERM/SIGINT.

use crate::app::AppState;
use crate::bootstrap::{admin, setup_token};
use crate::settings::{DatabaseTarget, Loaded, BRAIN_VERSION};
use crate::store::{self, SchemaStatus};
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

/// The serving brain's shared lock on its SQLite file (`None` before the
/// file exists, and on PostgreSQL).
fn sqlite_lock(target: &DatabaseTarget) -> Result<Option<store::backup::FileLock>, StartError> {
    let DatabaseTarget::Sqlite { path, .. } = target else {
        return Ok(None);
    };
    match store::backup::lock_shared(path) {
        Ok(Some(l)) => Ok(Some(l)),
        Ok(None) => Err(StartError::new(
            1,
            format!(
                "`z4j restore` is replacing {}; start the brain when it has finished",
                path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StartError::new(1, format!("{}: {e}", path.display()))),
    }
}

pub async fn serve(
    mut loaded: Loaded,
    bootstrap_password: Option<String>,
) -> Result<(), StartError> {
    let embedded_pki = prepare_embedded(&mut loaded).await?;
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
    // Held while serving: `z4j restore` refuses to replace the file.
    let mut file_lock = sqlite_lock(&loaded.database)?;
    let db = open_database(&loaded).await?;
    if file_lock.is_none() {
        file_lock = sqlite_lock(&loaded.database)?; // the file is new
    }
    let _file_lock = file_lock;
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
    let http_port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(s.bind_port as u16);
    let supervisor = match (&embedded_pki, &grpc) {
        (Some(pki), Some(g)) => Some(start_embedded(&app, &loaded, pki, g.port, http_port)),
        (Some(_), None) => {
            tracing::error!("CRITICAL: the embedded scheduler is not started: the scheduler gRPC server is not running");
            None
        }
        _ => None,
    };
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
    let header_timeout = Duration::from_secs(s.request_timeout_seconds.max(1) as u64);
    let server = tokio::spawn(serve_http(listener, router, header_timeout, stop_rx));
    shutdown_signal().await;
    // New fires are refused from the signal on; the scheduler's other
    // calls are served until the gRPC server stops after the HTTP side.
    if let Some(g) = &grpc {
        g.close_admission();
    }
    // The child stops while HTTP drains; the gRPC server outlives both so
    // what the child still sends is answered (refused fires included).
    let child_stopped = async {
        if let Some(sup) = supervisor {
            sup.stop().await;
        }
    };
    tokio::join!(
        child_stopped,
        shutdown(app, server, workers, stop_tx, ingest_writer)
    );
    if let Some(g) = grpc {
        g.stop().await;
    }
    db.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The HTTP accept loop (what `axum::serve` does, plus the read timeout it
/// cannot set): a connection that has not sent a complete request head
/// within `header_timeout` (`Z4J_REQUEST_TIMEOUT_SECONDS`), including an
/// idle keep-alive connection, is closed, so slow or silent clients cannot
/// hold sockets and tasks forever (specs/decisions.md H7). On `stop`,
/// connections finish their request and close; returns when all have.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let (live_tx, live_rx) = tokio::sync::watch::channel(());
    loop {
        let (io, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = io.set_nodelay(true);
        let router = router.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
        let mut stop = stop.clone();
        let live = live_rx.clone();
        tokio::spawn(async move {
            // hyper's timer starts at the first byte: a client that sends
            // nothing at all gets the same budget.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, io.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                return;
            }
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(live);
        });
    }
    drop(live_rx);
    live_tx.closed().await;
    Ok(())
}

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
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
    // Browsers reconnect elsewhere (or after the restart) and refetch.
    app.commands.fleet().live.shut();
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

/// Embedded mode (scheduler spec §6.1): the interpreter can import
/// z4j_scheduler, the loopback PKI is minted afresh, and the settings are
/// rewritten so the gRPC server runs on it and admits only the embedded
/// scheduler's certificate. Any failure stops start-up, naming the variable.
async fn prepare_embedded(
    loaded: &mut Loaded,
) -> Result<Option<crate::scheduler_grpc::pki::LoopbackPki>, StartError> {
    let s = &mut loaded.settings;
    if !s.embedded_scheduler {
        return Ok(None);
    }
    crate::workers::embedded_scheduler::check_interpreter(
        &s.embedded_scheduler_python,
        &loaded.child_env,
    )
    .await
    .map_err(|e| StartError::new(1, e))?;
    let dir = s
        .embedded_scheduler_pki_dir
        .clone()
        .unwrap_or_else(|| loaded.home.join("embedded-pki").display().to_string());
    let pki = crate::scheduler_grpc::pki::mint_loopback(std::path::Path::new(&dir))
        .map_err(|e| StartError::new(1, format!("Z4J_EMBEDDED_SCHEDULER_PKI_DIR: {e}")))?;
    if s.scheduler_grpc_insecure {
        tracing::warn!("Z4J_SCHEDULER_GRPC_INSECURE is ignored in embedded mode: the embedded scheduler always uses its loopback mTLS");
    }
    if !s.scheduler_grpc_allowed_cns.0.is_empty() {
        tracing::warn!("Z4J_SCHEDULER_GRPC_ALLOWED_CNS is replaced in embedded mode: only the embedded scheduler's certificate is admitted");
    }
    let path = |p: &std::path::Path| Some(p.display().to_string());
    s.scheduler_grpc_enabled = true;
    s.scheduler_grpc_insecure = false;
    s.scheduler_grpc_tls_cert = path(&pki.server_cert);
    s.scheduler_grpc_tls_key = path(&pki.server_key);
    s.scheduler_grpc_tls_ca = path(&pki.ca);
    s.scheduler_grpc_allowed_cns = crate::settings::value::JsonList(vec![
        crate::scheduler_grpc::pki::EMBEDDED_CLIENT_CN.to_owned(),
    ]);
    tracing::info!(pki_dir = %dir, "embedded scheduler: loopback PKI minted");
    Ok(Some(pki))
}

/// Starts supervising the embedded scheduler once the gRPC port is bound.
fn start_embedded(
    app: &AppState,
    loaded: &Loaded,
    pki: &crate::scheduler_grpc::pki::LoopbackPki,
    grpc_port: u16,
    http_port: u16,
) -> crate::workers::embedded_scheduler::Supervisor {
    use crate::workers::embedded_scheduler as embedded;
    let text = |p: &std::path::Path| p.display().to_string();
    let (cert, key, ca) = (text(&pki.client_cert), text(&pki.client_key), text(&pki.ca));
    let hostname = embedded::hostname();
    let launch = embedded::launch(
        &app.settings,
        &loaded.child_env,
        &embedded::Wiring {
            grpc_port,
            http_port,
            client_cert: &cert,
            client_key: &key,
            ca: &ca,
            hostname: &hostname,
        },
    );
    embedded::Supervisor::start(
        app.db.clone(),
        launch,
        embedded::Policy::of(&app.settings),
        app.embedded.clone(),
    )
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
