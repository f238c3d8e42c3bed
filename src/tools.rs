//! The operator subcommands: `keys generate`, `keys list` and `config check`.
