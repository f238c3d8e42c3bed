//! token-authority: a gRPC service that signs, verifies and wraps JSON Web Tokens for other
//! backends, so none of them holds signing keys or JWT code.
//!
//! Modules, in reading order:
//! - [`keys`]: key ids, algorithms and key material parsed once into ring objects.
//! - [`profile`]: a named token shape — signing key, verify keys, issuer, audience, lifetimes.
//! - [`token`]: issue and verify as pure functions of (profile, input, time).
//! - [`rotation`]: managed key rotation as a pure function of (key records, now).
//! - [`login_url`]: the login URL template and the `next` rule; issues login links.
//! - [`config`]: the TOML file → a checked [`config::Config`]; the only code that reads
//!   configured key files and secrets from the environment, or writes generated key files.
//! - [`live`]: the profiles served now; rotation and reload build new ones and swap them in;
//!   reads and writes the managed key directories.
//! - [`jwks`]: JWK Sets and OpenID discovery documents built from the live profiles.
//! - [`error`]: domain errors → `tonic::Status`, in one place.
//! - [`service`]: the gRPC token service, proto ↔ domain and nothing else.
//! - [`admin`]: the gRPC key administration service (`ListKeys`, `RotateKey`, `Reload`).
//! - [`http`]: the HTTP listener for JWKS and OpenID discovery.
//! - [`startup`]: the tonic server with health, reflection and graceful shutdown.
//! - [`tools`]: the operator subcommands (`keys generate`, `keys list`, `config check`).
//! - [`telemetry`]: the tracing subscriber.
//! - [`clock`]: where "now" comes from.
#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod jwks;
pub mod keys;
pub mod live;
pub mod login_url;
pub mod profile;
pub mod rotation;
pub mod service;
pub mod startup;
pub mod telemetry;
pub mod token;
pub mod tools;

/// Generated protobuf types, gRPC server and client for `tokenauthority.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("tokenauthority.v1");

    /// The encoded descriptors of our proto and its imports, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("token_authority_descriptor");
}
