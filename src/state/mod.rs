//! What lives outside the process: the configuration file turned into checked specs, the live
//! snapshot that rotation and reload swap, the managed key directories, the remote key sets of
//! federated issuers, and atomic file writes.
//!
//! Reading order: [`config`], [`files`], [`managed`], [`federated`], [`live`].

pub mod config;
pub mod federated;
pub mod files;
pub mod live;
pub mod managed;
