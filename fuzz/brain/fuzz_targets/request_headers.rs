//! The brain's parsers of request headers, on the fuzzer's strings:
//! session cookies (a cookie verifies only as it was signed, and any
//! changed byte of a signed one is refused), `X-Forwarded-For` (the client
//! is the peer or one of the listed hops, and only a trusted peer may name
//! another), `Host` (a name the same parser keeps as it is, lower case, no
//! port) and `Authorization: Bearer`.
#![no_main]

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use uuid::Uuid;
use z4j_brain::auth::cookie;
use z4j_brain::http::hardening::hosts::host_name;
use z4j_brain::net::{bearer_token, client_ip};

#[derive(Arbitrary, Debug)]
struct Input {
    text: String,
    sid: [u8; 16],
    signed_at: u32,
    age: u16,
    flip_at: u16,
    flip_to: u8,
    peer: [u8; 4],
    trusted_prefix: u8,
}

const SECRET: &str = "fuzz-session-secret-0123456789abcdef";
const OTHER: &str = "fuzz-previous-secret-0123456789abcdef";

fuzz_target!(|input: Input| {
    let now = u64::from(input.signed_at) + u64::from(input.age);

    // Cookies: arbitrary text never panics and never verifies by chance
    // under a secret it was not signed with.
    let _ = cookie::verify(&[SECRET, OTHER], &input.text, now, 3600);
    let sid = Uuid::from_bytes(input.sid);
    let signed = cookie::sign(SECRET, sid, u64::from(input.signed_at));
    let fresh = u64::from(input.age) <= 3600;
    let got = cookie::verify(&[OTHER, SECRET], &signed, now, 3600);
    assert_eq!(got.is_ok(), fresh, "{signed} at age {}: {got:?}", input.age);
    if let Ok(back) = got {
        assert_eq!(back, sid);
    }
    let mut bytes = signed.clone().into_bytes();
    let at = usize::from(input.flip_at) % bytes.len();
    if bytes[at] != input.flip_to {
        bytes[at] = input.flip_to;
        if let Ok(tampered) = String::from_utf8(bytes) {
            let r = cookie::verify(&[SECRET], &tampered, now, 3600);
            assert!(r.is_err(), "{tampered} (from {signed}) verified: {r:?}");
        }
    }

    // X-Forwarded-For: the answer is the peer or one of the hops.
    let peer = IpAddr::from(input.peer);
    let trusted: Vec<ipnet::IpNet> = match input.trusted_prefix % 3 {
        0 => Vec::new(),
        1 => vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())],
        _ => vec!["0.0.0.0/0".parse().unwrap_or_else(|_| unreachable!())],
    };
    let client = client_ip::resolve(peer, Some(&input.text), &trusted);
    let peer_trusted = trusted.iter().any(|n| n.contains(&peer));
    if !peer_trusted {
        assert_eq!(client, peer, "an untrusted peer named {client}");
    } else if client != peer {
        let hops: Vec<IpAddr> = input
            .text
            .split(',')
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        assert!(
            hops.contains(&client),
            "{client} is not a hop of {:?}",
            input.text
        );
    }

    // Host: a name is kept as it is by the same parser.
    if let Some(name) = host_name(&input.text) {
        assert!(!name.is_empty());
        assert_eq!(name, name.to_ascii_lowercase());
        assert!(input.text.to_ascii_lowercase().starts_with(&name));
        assert_eq!(
            host_name(&name).as_deref(),
            Some(name.as_str()),
            "{:?}",
            input.text
        );
    }

    // Authorization: a token is a non-empty part of the header, trimmed.
    if let Ok(v) = HeaderValue::from_str(&input.text) {
        let mut h = HeaderMap::new();
        h.insert("authorization", v);
        if let Some(token) = bearer_token(&h) {
            assert!(!token.is_empty() && token == token.trim());
            assert!(input.text.contains(token));
        }
    }
});
