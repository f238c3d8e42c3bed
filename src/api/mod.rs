//! The wire: the gRPC services, proto ↔ domain conversions, the one error → `Status` mapping,
//! the HTTP listener for JWKS, discovery and metrics, and the server that runs them all.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod convert;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod peer;
pub mod server;
pub mod service;
pub mod tls;
