//! The client address: the TCP peer, or, when the peer is a trusted proxy,
//! the right-most untrusted address of `X-Forwarded-For`.

use crate::settings::Settings;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The client address of a request: its `X-Forwarded-For` is honoured only
/// through `Z4J_TRUSTED_PROXIES`.
pub fn of_request(s: &Settings, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    resolve(peer.ip(), xff, &s.trusted_proxies.0)
}

pub fn resolve(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let mut hops: Vec<IpAddr> = Vec::new();
    for part in xff.split(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) => hops.push(ip),
            Err(_) => return peer, // a malformed chain proves nothing
        }
    }
    // All hops trusted: the left-most is the origin.
    let leftmost = hops.first().copied().unwrap_or(peer);
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(leftmost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trusted_peers_may_forward() {
        let proxy: IpNet = "10.0.0.0/8".parse().unwrap();
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(resolve(outsider, Some("1.2.3.4"), &[proxy]), outsider);
        assert_eq!(
            resolve(peer, Some("1.2.3.4, 10.0.0.7"), &[proxy]),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(peer, Some("garbage"), &[proxy]), peer);
        assert_eq!(resolve(peer, None, &[proxy]), peer);
        assert_eq!(
            resolve(peer, Some("10.0.0.9, 10.0.0.7"), &[proxy]),
            "10.0.0.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(peer, Some("1.2.3.4"), &[]), peer);
    }
}
