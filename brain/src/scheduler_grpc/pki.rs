//! `z4j mint-scheduler-cert`: a client certificate for one scheduler,
//! signed by the operator's CA (scheduler spec §7). The key is ECDSA P-256
//! rather than the reference's RSA-2048 (decision Y8); the profile is the
//! reference's: O=z4j, OU=scheduler, CN=<name>, SAN DNS <name>, CA:false
//! and EKU clientAuth (both critical), a 64-bit random serial, valid from
//! five minutes ago.

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
const OID_EKU: &[u64] = &[2, 5, 29, 37];

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
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(1, format!("key generation failed: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
        .map_err(|e| fail(1, format!("--name {name:?}: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "z4j");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "scheduler");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let mut eku = rcgen::CustomExtension::from_oid_content(OID_EKU, EKU_CLIENT_AUTH.to_vec());
    eku.set_criticality(true);
    params.custom_extensions.push(eku);
    let serial: [u8; 8] = rand::random();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &[&[0u8][..], &serial[..]].concat(),
    ));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(validity_days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| fail(1, format!("signing failed: {e}")))?;
    write_private_dir(out_dir)
        .map_err(|e| fail(1, format!("--out-dir {}: {e}", out_dir.display())))?;
    let crt_path = out_dir.join(format!("{name}.crt"));
    let key_path = out_dir.join(format!("{name}.key"));
    write_private(&crt_path, cert.pem().as_bytes())
        .map_err(|e| fail(1, format!("{}: {e}", crt_path.display())))?;
    write_private(&key_path, key.serialize_pem().as_bytes())
        .map_err(|e| fail(1, format!("{}: {e}", key_path.display())))?;
    Ok((crt_path, key_path))
}

fn write_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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
