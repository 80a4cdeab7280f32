//! Scheduler certificates. `z4j mint-scheduler-cert`: a client certificate
//! for one scheduler, signed by the operator's CA (scheduler spec §7);
//! [`mint_loopback`]: the embedded scheduler's throwaway CA, server and
//! client certificates (§6.2). Keys are ECDSA P-256 rather than the
//! reference's RSA-2048 (decision Y8); the profiles are the reference's:
//! CA:false and the one EKU both critical, a 64-bit random serial, valid
//! from five minutes ago.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A minting failure and the exit status it maps to (2: a missing CA file,
/// 1: anything else).
#[derive(Debug)]
pub struct MintError {
    pub exit_code: i32,
    pub message: String,
}

fn fail(exit_code: i32, message: impl Into<String>) -> MintError {
    MintError {
        exit_code,
        message: message.into(),
    }
}

/// The DER of extKeyUsage = { clientAuth }.
const EKU_CLIENT_AUTH: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
];
/// The DER of extKeyUsage = { serverAuth }.
const EKU_SERVER_AUTH: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
];
const OID_EKU: &[u64] = &[2, 5, 29, 37];

/// The allow-list name of the embedded scheduler's client certificate.
pub const EMBEDDED_CLIENT_CN: &str = "scheduler-embedded";

/// What a leaf certificate is for.
struct Leaf<'a> {
    cn: &'a str,
    ou: &'a str,
    sans: Vec<String>,
    eku: &'static [u8],
    days: i64,
}

fn names(ou: &str, cn: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "z4j");
    dn.push(rcgen::DnType::OrganizationalUnitName, ou);
    dn.push(rcgen::DnType::CommonName, cn);
    dn
}

fn validity(params: &mut rcgen::CertificateParams, days: i64) {
    let serial: [u8; 8] = rand::random();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &[&[0u8][..], &serial[..]].concat(),
    ));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(days);
}

/// A new key and its certificate (PEM) signed by `issuer`.
fn sign_leaf<S: rcgen::SigningKey>(
    leaf: &Leaf<'_>,
    issuer: &rcgen::Issuer<'_, S>,
) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("key generation failed: {e}"))?;
    let mut params = rcgen::CertificateParams::new(leaf.sans.clone())
        .map_err(|e| format!("{:?}: {e}", leaf.cn))?;
    params.distinguished_name = names(leaf.ou, leaf.cn);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let mut eku = rcgen::CustomExtension::from_oid_content(OID_EKU, leaf.eku.to_vec());
    eku.set_criticality(true);
    params.custom_extensions.push(eku);
    validity(&mut params, leaf.days);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The embedded scheduler's PKI on disk.
#[derive(Debug, Clone)]
pub struct LoopbackPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Mints a fresh CA (its key never leaves memory), the brain's server
/// certificate (`brain-embedded`, SANs localhost and the loopback
/// addresses) and the scheduler's client certificate
/// ([`EMBEDDED_CLIENT_CN`]) into `dir` (0700; files 0600, overwritten).
pub fn mint_loopback(dir: &Path) -> Result<LoopbackPki, String> {
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(e)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name = names("embedded", "z4j-embedded-loopback-ca");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    validity(&mut ca, 365);
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server = sign_leaf(
        &Leaf {
            cn: "brain-embedded",
            ou: "embedded-server",
            sans: ["localhost", "brain-embedded", "127.0.0.1", "::1"]
                .map(String::from)
                .to_vec(),
            eku: EKU_SERVER_AUTH,
            days: 365,
        },
        &issuer,
    )?;
    let client = sign_leaf(
        &Leaf {
            cn: EMBEDDED_CLIENT_CN,
            ou: "embedded-client",
            sans: vec![EMBEDDED_CLIENT_CN.to_owned()],
            eku: EKU_CLIENT_AUTH,
            days: 365,
        },
        &issuer,
    )?;
    private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pki = LoopbackPki {
        ca: dir.join("ca.crt"),
        server_cert: dir.join("brain-embedded.crt"),
        server_key: dir.join("brain-embedded.key"),
        client_cert: dir.join("scheduler-embedded.crt"),
        client_key: dir.join("scheduler-embedded.key"),
    };
    for (path, text) in [
        (&pki.ca, &ca_cert.pem()),
        (&pki.server_cert, &server.0),
        (&pki.server_key, &server.1),
        (&pki.client_cert, &client.0),
        (&pki.client_key, &client.1),
    ] {
        write_private(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(pki)
}

/// Created (or re-chmodded) 0700; a directory the process may not chmod
/// is accepted only when nobody else can read it already.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 == 0 {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot make it private (mode {:o}): {e}", mode & 0o777),
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// A name usable as a CN and as a file name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("--name must not be empty".into());
    }
    if name.contains(['/', '\\']) || name.contains("..") || name.chars().any(char::is_control) {
        return Err(format!(
            "--name {name:?} must not contain '/', '\\\\', '..' or control characters"
        ));
    }
    Ok(())
}

/// Writes `<out>/<name>.crt` and `<out>/<name>.key` (0600, in a 0700
/// directory); the two paths.
pub fn mint(
    name: &str,
    ca_cert: &Path,
    ca_key: &Path,
    out_dir: &Path,
    validity_days: i64,
) -> Result<(PathBuf, PathBuf), MintError> {
    check_name(name).map_err(|e| fail(1, e))?;
    if validity_days <= 0 {
        return Err(fail(1, "--validity-days must be greater than 0"));
    }
    let read = |p: &Path, what: &str| {
        std::fs::read_to_string(p).map_err(|e| fail(2, format!("{what} {}: {e}", p.display())))
    };
    let ca_pem = read(ca_cert, "--ca-cert")?;
    let ca_key_pem = read(ca_key, "--ca-key")?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(|e| {
        fail(
            1,
            format!(
                "--ca-key {}: not an unencrypted PEM private key ({e})",
                ca_key.display()
            ),
        )
    })?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| {
        fail(
            1,
            format!(
                "--ca-cert {}: cannot be read as a CA certificate ({e})",
                ca_cert.display()
            ),
        )
    })?;
    let (cert_pem, key_pem) = sign_leaf(
        &Leaf {
            cn: name,
            ou: "scheduler",
            sans: vec![name.to_owned()],
            eku: EKU_CLIENT_AUTH,
            days: validity_days,
        },
        &issuer,
    )
    .map_err(|e| fail(1, e))?;
    private_dir(out_dir).map_err(|e| fail(1, format!("--out-dir {}: {e}", out_dir.display())))?;
    let crt_path = out_dir.join(format!("{name}.crt"));
    let key_path = out_dir.join(format!("{name}.key"));
    write_private(&crt_path, cert_pem.as_bytes())
        .map_err(|e| fail(1, format!("{}: {e}", crt_path.display())))?;
    write_private(&key_path, key_pem.as_bytes())
        .map_err(|e| fail(1, format!("{}: {e}", key_path.display())))?;
    Ok((crt_path, key_path))
}

/// Created 0600 (truncated if it exists), never through a symlink.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("scheduler-1").is_ok());
        for bad in ["", " ", "a/b", "..", "a\\b", "x\ny"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mints_a_client_certificate_the_ca_signed() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), ca_key.serialize_pem()).unwrap();
        let out = dir.path().join("out");
        let (crt, key) = mint(
            "scheduler-1",
            &dir.path().join("ca.crt"),
            &dir.path().join("ca.key"),
            &out,
            30,
        )
        .unwrap();
        let pem = std::fs::read_to_string(&crt).unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            c.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "scheduler-1"
        );
        assert_eq!(
            c.issuer()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "test-ca"
        );
        let eku = c.extended_key_usage().unwrap().unwrap();
        assert!(eku.critical && eku.value.client_auth && !eku.value.server_auth);
        let bc = c.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && !bc.value.ca);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let missing = mint(
            "s",
            &dir.path().join("nope.crt"),
            &dir.path().join("ca.key"),
            &out,
            1,
        )
        .unwrap_err();
        assert_eq!(missing.exit_code, 2);
    }
}

#[cfg(test)]
mod loopback_tests {
    use super::*;

    fn parse(path: &Path) -> Vec<u8> {
        let pem = std::fs::read_to_string(path).unwrap();
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    #[test]
    fn the_loopback_pki_has_the_documented_profile() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pki = mint_loopback(&out).unwrap();
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o700,
            "re-chmodded"
        );
        for f in [
            &pki.ca,
            &pki.server_cert,
            &pki.server_key,
            &pki.client_cert,
            &pki.client_key,
        ] {
            assert_eq!(
                std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let ca_der = parse(&pki.ca);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let bc = ca.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint == Some(0));
        let ku = ca.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
        let server_der = parse(&pki.server_cert);
        let (_, server) = x509_parser::parse_x509_certificate(&server_der).unwrap();
        let eku = server.extended_key_usage().unwrap().unwrap();
        assert!(eku.critical && eku.value.server_auth && !eku.value.client_auth);
        let sans: Vec<String> = server
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => (*d).to_owned(),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
                    _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
                },
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["localhost", "brain-embedded", "127.0.0.1", "::1"]);
        assert!(server.verify_signature(Some(ca.public_key())).is_ok());
        let client_der = parse(&pki.client_cert);
        let (_, client) = x509_parser::parse_x509_certificate(&client_der).unwrap();
        let cn = client.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), EMBEDDED_CLIENT_CN);
        let eku = client.extended_key_usage().unwrap().unwrap();
        assert!(eku.critical && eku.value.client_auth && !eku.value.server_auth);
        assert!(client.verify_signature(Some(ca.public_key())).is_ok());
        // Minted afresh: a second boot writes a new CA over the old one.
        let again = mint_loopback(&out).unwrap();
        assert_ne!(parse(&again.ca), ca_der);
    }
}
