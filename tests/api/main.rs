//! One test binary: every test starts the real server on 127.0.0.1:0 (see `helpers`) and talks
//! to it through the generated gRPC client, as a calling service would.

mod admin;
mod audit;
mod callers;
mod cli;
mod config;
mod es512;
mod federated;
mod helpers;
mod interop;
mod issue;
mod jwk;
mod jwks;
mod key_files;
mod layering;
mod lifecycle;
mod login_url;
mod managed;
mod metrics;
mod operations;
mod pki;
mod redis;
mod reload;
mod relying_party;
mod tls;
mod vectors;
mod verify;
