//! The scheduler ↔ brain gRPC contract, package `z4j.scheduler.v1`.
//!
//! `proto/scheduler.proto` was regenerated from the file descriptor that
//! z4j-scheduler 1.13.0 (Apache-2.0) ships; field names and numbers are the
//! wire contract. The brain serves it; the conformance suite is a client.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("z4j.scheduler.v1");
}

pub use prost_types::Timestamp;
