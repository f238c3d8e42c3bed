//! The operator commands, one file each; `main.rs` parses the command line and calls them.
//!
//! None of them serves anything. Their logs go to stderr, so stdout carries only the answer (for
//! `keys generate --out -`, only the key).

/// `config check`: load a configuration as `serve` would, print what it holds, write nothing.
pub mod config_check;
/// `keys generate`: make key material for a `[[keys]]` entry, never printing it by accident.
pub mod keys_generate;
/// `keys list`: print every key a running service holds, as text or one JSON document.
pub mod keys_list;
