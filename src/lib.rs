//! token-authority: a gRPC service that signs, verifies and wraps JSON Web Tokens for other
//! backends, so none of them holds signing keys or JWT code.
//!
//! The folder tells the layer, and each layer uses only the ones above it in this list:
//! - [`core`]: the product itself, pure. Keys parsed once, profiles checked once, the key
//!   lifecycle as a plan, issue and verify, login links, JWK Sets. No tonic, prost, files,
//!   environment or clock reads.
//! - [`state`]: what lives outside the process. The TOML file → checked specs, the live
//!   snapshot that rotation and reload swap, the managed key directories, atomic file writes.
//! - [`api`]: the wire. gRPC services, proto ↔ domain, the one error → `Status` mapping, the
//!   HTTP listener, and the server that runs them with health, reflection and shutdown.
//! - [`cli`]: the operator commands (`keys generate`, `keys list`, `config check`, `healthcheck`).
//! - [`telemetry`]: the tracing subscriber.
//! - [`proto`]: the generated protobuf types, server and client.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod core;
pub mod state;
pub mod telemetry;

/// Generated protobuf types, gRPC server and client for `tokenauthority.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("tokenauthority.v1");

    /// The encoded descriptors of our proto and its imports, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("token_authority_descriptor");
}
