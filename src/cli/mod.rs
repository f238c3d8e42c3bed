//! The operator commands, one file each; `main.rs` parses the command line and calls them.

pub mod tools;
