//! Who a scheduler is: every SAN value and the subject CN of its client
//! certificate, normalised (scheduler spec §1.5); the allow-list check;
//! and the projects its identities are bound to (§1.7).

use crate::schedules::Scope;
use crate::store::{schedules as rows, Db, StoreError};
use std::collections::BTreeSet;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A caller's identities (empty in insecure mode: no certificate).
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub identities: BTreeSet<String>,
}

impl Peer {
    /// The smallest identity: the key of the fire-rate bucket (`""` when
    /// none) and of the watch per-cert count (`_anon` when none).
    pub fn primary(&self) -> &str {
        self.identities.iter().next().map_or("", String::as_str)
    }

    pub fn watch_key(&self) -> String {
        match self.primary() {
            "" => "_anon".to_owned(),
            p => p.to_owned(),
        }
    }

    /// The identities of a DER certificate (the leaf of the chain).
    pub fn of_certificate(der: &[u8]) -> Peer {
        let mut identities = BTreeSet::new();
        if let Ok((_, cert)) = X509Certificate::from_der(der) {
            for cn in cert.subject().iter_common_name() {
                if let Ok(v) = cn.as_str() {
                    insert(&mut identities, v);
                }
            }
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        GeneralName::DNSName(v)
                        | GeneralName::URI(v)
                        | GeneralName::RFC822Name(v) => insert(&mut identities, v),
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_text(bytes) {
                                insert(&mut identities, &ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Peer { identities }
    }

    /// Allowed when the list is empty or names one of the identities.
    pub fn allowed_by(&self, list: &[String]) -> bool {
        list.is_empty()
            || list
                .iter()
                .any(|entry| self.identities.contains(&normalise(entry)))
    }

    /// The projects this caller may touch: unrestricted unless one of its
    /// identities is a key of the bindings, then the union of the bound
    /// slugs (unknown slugs resolve to nothing).
    pub async fn scope(
        &self,
        db: &Db,
        bindings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Scope, StoreError> {
        let mut bound = false;
        let mut slugs = Vec::new();
        for (key, value) in bindings {
            if self.identities.contains(&normalise(key)) {
                bound = true;
                for s in value.as_array().into_iter().flatten() {
                    if let Some(s) = s.as_str() {
                        slugs.push(s.to_owned());
                    }
                }
            }
        }
        if !bound {
            return Ok(Scope::All);
        }
        Ok(Scope::Projects(
            rows::project_ids_by_slugs(db, &slugs).await?,
        ))
    }
}

fn insert(set: &mut BTreeSet<String>, raw: &str) {
    let v = normalise(raw);
    if !v.is_empty() {
        set.insert(v);
    }
}

/// One leading `DNS:`, `IP:`, `URI:` or `email:` removed, then trimmed.
pub fn normalise(raw: &str) -> String {
    let t = ["DNS:", "IP:", "URI:", "email:"]
        .iter()
        .find_map(|p| raw.strip_prefix(p))
        .unwrap_or(raw);
    t.trim().to_owned()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => {
            let a: [u8; 4] = bytes.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(a).to_string())
        }
        16 => {
            let a: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(a).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising() {
        assert_eq!(normalise("DNS: scheduler-1 "), "scheduler-1");
        assert_eq!(normalise("IP:127.0.0.1"), "127.0.0.1");
        assert_eq!(normalise("DNS:DNS:x"), "DNS:x");
        assert_eq!(normalise("scheduler-1"), "scheduler-1");
    }

    #[test]
    fn primary_and_allow_list() {
        let p = Peer {
            identities: ["b-sched", "a-sched"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        assert_eq!(p.primary(), "a-sched");
        assert!(p.allowed_by(&[]));
        assert!(p.allowed_by(&["DNS:b-sched".into()]));
        assert!(!p.allowed_by(&["c-sched".into()]));
        let anon = Peer::default();
        assert_eq!(anon.primary(), "");
        assert_eq!(anon.watch_key(), "_anon");
        assert!(!anon.allowed_by(&["a".into()]));
    }
}
