//! Per-IP request buckets of the REST surface.

use super::error::ApiError;
use crate::net::{client_ip, SlidingWindow};
use axum::http::HeaderMap;
use std::net::SocketAddr;

/// Counts a request against a per-IP bucket (http-api 6.4): the client
/// address, or 429 family B naming the bucket with `Retry-After`.
pub fn hit_bucket(
    s: &crate::settings::Settings,
    window: &SlidingWindow,
    bucket: &'static str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let ip = client_ip::of_request(s, peer, headers).to_string();
    window.hit(&ip).map_err(|retry| ApiError::TooManyRequests {
        bucket,
        retry_after_secs: retry,
    })?;
    Ok(ip)
}
