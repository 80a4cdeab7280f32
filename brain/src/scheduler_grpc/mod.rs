//! The scheduler's transport: `z4j.scheduler.v1.SchedulerService` over
//! gRPC (tonic), mTLS with a required client certificate (plaintext only
//! in dev), the allow-list checked on every call, the admission latch and
//! the bounded drain (scheduler spec §1).

pub mod identity;
pub mod pki;
mod service;
pub mod watch;
pub mod wire;

use crate::schedules::Schedules;
use crate::settings::Settings;
use identity::Peer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};
use z4j_scheduler_proto::v1::scheduler_service_server::SchedulerServiceServer;

/// A running gRPC server.
pub struct Running {
    pub port: u16,
    admitting: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    /// Ends the open watch streams when the grace window is over.
    cut: tokio::sync::watch::Sender<bool>,
    caps: Arc<watch::Caps>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    grace: Duration,
}

impl Running {
    /// From now on `FireSchedule` answers UNAVAILABLE; everything else is
    /// still served (§1.10). Never reopens.
    pub fn close_admission(&self) {
        self.admitting.store(false, Ordering::Release);
    }

    /// The drain (decision Y2): fires are refused from the start; every
    /// other call is served until the open watch streams have ended or the
    /// grace window is over, then the streams are ended and the server
    /// stops (unary calls in flight finish).
    pub async fn stop(self) {
        self.close_admission();
        let deadline = tokio::time::Instant::now() + self.grace;
        while self.caps.open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.caps.open() > 0 {
            tracing::info!(
                seconds = self.grace.as_secs_f64(),
                streams = self.caps.open(),
                "scheduler gRPC grace elapsed; ending open watch streams"
            );
        }
        let _ = self.cut.send(true);
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        tracing::info!(
            refused_fires = self.refused.load(Ordering::Relaxed),
            "scheduler gRPC server stopped"
        );
    }
}

/// Reads a PEM file named by `var`: set, a regular file, not blank.
fn read_pem(var: &str, path: Option<&String>) -> Result<String, String> {
    let path = path
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| format!("{var} is required for the scheduler gRPC server (or Z4J_SCHEDULER_GRPC_INSECURE=true in dev)"))?;
    let meta = std::fs::metadata(path).map_err(|e| format!("{var}: cannot read {path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{var}: {path} is not a regular file"));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{var}: cannot read {path}: {e}"))?;
    if text.trim().is_empty() {
        return Err(format!("{var}: {path} is empty"));
    }
    if !text.contains("-----BEGIN ") {
        return Err(format!("{var}: {path} is not PEM"));
    }
    Ok(text)
}

/// Binds and starts the server. An error is one line naming the variable.
pub async fn start(settings: Arc<Settings>, schedules: Schedules) -> Result<Running, String> {
    let allowed = settings.scheduler_grpc_allowed_cns.0.clone();
    if allowed.is_empty() {
        if settings.scheduler_grpc_require_allowlist {
            return Err("Z4J_SCHEDULER_GRPC_ALLOWED_CNS is empty and Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST=true: list the scheduler certificate names".into());
        }
        tracing::warn!(
            tag = "scheduler_grpc_open_ca",
            "Z4J_SCHEDULER_GRPC_ALLOWED_CNS is empty: any client certificate the CA signed is accepted"
        );
    }
    let insecure = settings.scheduler_grpc_insecure;
    let mut builder = Server::builder();
    if !insecure {
        let cert = read_pem(
            "Z4J_SCHEDULER_GRPC_TLS_CERT",
            settings.scheduler_grpc_tls_cert.as_ref(),
        )?;
        let key = read_pem(
            "Z4J_SCHEDULER_GRPC_TLS_KEY",
            settings.scheduler_grpc_tls_key.as_ref(),
        )?;
        let ca = read_pem(
            "Z4J_SCHEDULER_GRPC_TLS_CA",
            settings.scheduler_grpc_tls_ca.as_ref(),
        )?;
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(ca));
        builder = builder.tls_config(tls).map_err(|e| {
            format!("Z4J_SCHEDULER_GRPC_TLS_CERT/_KEY/_CA: the certificate, key and CA do not load together: {e}")
        })?;
    }
    let addr = format!(
        "{}:{}",
        settings.scheduler_grpc_bind_host, settings.scheduler_grpc_bind_port
    );
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("Z4J_SCHEDULER_GRPC_BIND_PORT: cannot listen on {addr}: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("Z4J_SCHEDULER_GRPC_BIND_PORT: {e}"))?
        .port();
    let admitting = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicU64::new(0));
    let (cut, cut_rx) = tokio::sync::watch::channel(false);
    let caps = Arc::new(watch::Caps::new(
        settings.scheduler_grpc_watch_max_concurrent as usize,
        settings.scheduler_grpc_watch_max_per_cert as usize,
    ));
    let svc = service::Service {
        settings: settings.clone(),
        schedules,
        caps: caps.clone(),
        admitting: admitting.clone(),
        refused_while_draining: refused.clone(),
        fire_slots: tokio::sync::Semaphore::new(service::FIRE_CONCURRENCY),
        cut: cut_rx,
    };
    let check = move |mut r: Request<()>| -> Result<Request<()>, Status> {
        if insecure {
            // No certificate, no identity: no allow-list, no binding, no
            // fire-rate bucket (§1.4).
            r.extensions_mut().insert(Peer::default());
            return Ok(r);
        }
        let peer = r
            .peer_certs()
            .and_then(|chain| chain.first().map(|c| Peer::of_certificate(c.as_ref())))
            .unwrap_or_default();
        if !peer.allowed_by(&allowed) {
            tracing::warn!(identities = ?peer.identities, "scheduler refused: not on Z4J_SCHEDULER_GRPC_ALLOWED_CNS");
            return Err(Status::permission_denied(
                "scheduler not authorised - CN not on allow-list",
            ));
        }
        r.extensions_mut().insert(peer);
        Ok(r)
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = builder.add_service(SchedulerServiceServer::with_interceptor(svc, check));
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            })
            .await
    });
    println!(
        "z4j: scheduler gRPC on {}:{port}",
        settings.scheduler_grpc_bind_host
    );
    tracing::info!(port, insecure, "scheduler gRPC server started");
    Ok(Running {
        port,
        admitting,
        refused,
        stop: stop_tx,
        cut,
        caps,
        task,
        grace: Duration::from_secs_f64(settings.scheduler_grpc_grace_seconds),
    })
}
