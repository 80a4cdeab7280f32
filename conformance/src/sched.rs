//! The scheduler's side of the gRPC contract, for cases: a client
//! generated from the same proto the brain serves, plaintext or mTLS, and
//! a throwaway PKI (CA, server and client certificates) minted per case.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
pub use z4j_scheduler_proto::v1 as pb;
use z4j_scheduler_proto::v1::scheduler_service_client::SchedulerServiceClient;

pub type Client = SchedulerServiceClient<Channel>;

/// Every call (and the opening of every stream) gives up after this, so a
/// target that never answers fails its case with a timeout instead of
/// holding it to the case limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A plaintext client (the brain in insecure dev mode).
pub async fn insecure(port: u16) -> Result<Client, String> {
    let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("gRPC connect to :{port}: {e}"))?;
    Ok(SchedulerServiceClient::new(ch))
}

/// An mTLS client presenting `client` (None: no certificate at all).
pub async fn mtls(port: u16, pki: &Pki, client: Option<&str>) -> Result<Client, String> {
    let identity = match client {
        Some(name) => Some(pki.client(name)?),
        None => None,
    };
    mtls_pem(port, &pki.ca_pem, identity).await
}

/// An mTLS client trusting `ca_pem` for the brain's `localhost`
/// certificate and presenting `identity` (certificate, key PEM).
pub async fn mtls_pem(
    port: u16,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Result<Client, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let ch = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("gRPC TLS connect to :{port}: {e:?}"))?;
    Ok(SchedulerServiceClient::new(ch))
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and client
/// certificates by name, written as PEM files under `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn new(dir: &Path) -> Result<Pki, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let e = |e: rcgen::Error| e.to_string();
        let ca_key = rcgen::KeyPair::generate().map_err(e)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "conformance-ca");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = ca_params.self_signed(&ca_key).map_err(e)?;
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca_pem: ca.pem(),
            ca_params,
            ca_key,
        };
        pki.write("ca.crt", &pki.ca_pem)?;
        pki.write("ca.key", &pki.ca_key.serialize_pem())?;
        let (cert, key) = pki.issue("localhost", &["localhost", "127.0.0.1"], true)?;
        pki.write("server.crt", &cert)?;
        pki.write("server.key", &key)?;
        Ok(pki)
    }

    fn write(&self, name: &str, text: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `(cert PEM, key PEM)` signed by the CA; IP-shaped SANs become IP
    /// entries.
    pub fn issue(&self, cn: &str, sans: &[&str], server: bool) -> Result<(String, String), String> {
        let e = |e: rcgen::Error| e.to_string();
        let key = rcgen::KeyPair::generate().map_err(e)?;
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .map_err(e)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).map_err(e)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate whose CN and DNS SAN are `name`.
    pub fn client(&self, name: &str) -> Result<(String, String), String> {
        self.issue(name, &[name], false)
    }
}

/// The scheduler's cadence fire id for `(schedule, slot)`: uuid5 of the
/// slot in Python's ISO form (scheduler spec §2.7.2).
pub fn cadence_fire_id(schedule_id: &str, slot: chrono::DateTime<chrono::Utc>) -> String {
    let ns = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"z4j-scheduler.fire-id.v1");
    let name = format!("{schedule_id}:{}", slot.format("%Y-%m-%dT%H:%M:%S+00:00"));
    uuid::Uuid::new_v5(&ns, name.as_bytes()).to_string()
}

pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A `FireSchedule` request of the stock scheduler for a cadence slot.
pub fn fire_request(
    schedule_id: &str,
    slot: chrono::DateTime<chrono::Utc>,
) -> pb::FireScheduleRequest {
    pb::FireScheduleRequest {
        schedule_id: schedule_id.to_owned(),
        fire_id: cadence_fire_id(schedule_id, slot),
        scheduled_for: Some(timestamp(slot)),
        fired_at: Some(timestamp(chrono::Utc::now())),
        ..Default::default()
    }
}

pub fn ack(fire_id: &str, status: &str, error: &str) -> pb::AcknowledgeFireResultRequest {
    pb::AcknowledgeFireResultRequest {
        fire_id: fire_id.to_owned(),
        command_id: String::new(),
        status: status.to_owned(),
        new_task_id: String::new(),
        error: error.to_owned(),
    }
}

/// A TCP forwarder standing in for a load balancer in front of brain
/// replicas: it listens on its own port and relays each connection to the
/// current target; [`Forwarder::switch`] drops every relayed connection
/// and sends new ones to another port.
pub struct Forwarder {
    pub port: u16,
    target: std::sync::Arc<std::sync::atomic::AtomicU16>,
    epoch: tokio::sync::watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(target: u16) -> Result<Forwarder, String> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let target = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(target));
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let (to, ep) = (target.clone(), epoch.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = to.load(Ordering::Acquire);
                let mut cut = ep.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Forwarder {
            port,
            target,
            epoch,
            accept,
        })
    }

    /// New connections go to `port`; the open ones are cut.
    pub fn switch(&self, port: u16) {
        self.target
            .store(port, std::sync::atomic::Ordering::Release);
        self.epoch.send_modify(|e| *e += 1);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
        self.epoch.send_modify(|e| *e += 1);
    }
}
