//! The keys a federated profile verifies with: a JWK Set another issuer publishes, as the state
//! layer last fetched it. The core never fetches; a [`RemoteKeys`] is handed to
//! [`crate::core::token::verify_with`] beside the profile, so Verify stays a pure function.

use std::sync::Arc;

use crate::core::keys::Key;

/// One reading of a remote key set: the keys it held, or why there are none to use.
#[derive(Debug)]
pub struct RemoteKeys {
    /// Where the keys come from (the JWKS URL), for refusal details.
    pub(crate) source: String,
    pub(crate) keys: Vec<Arc<Key>>,
    /// Why the set cannot be used (never fetched, or stale past its limit); `None`: usable.
    pub(crate) unavailable: Option<String>,
}

impl RemoteKeys {
    /// A usable set fetched from `source`.
    pub fn usable(source: &str, keys: Vec<Arc<Key>>) -> RemoteKeys {
        RemoteKeys {
            source: source.to_owned(),
            keys,
            unavailable: None,
        }
    }

    /// No usable set from `source`, and why (the reason ends up in the refusal's detail).
    pub fn unavailable(source: &str, why: String) -> RemoteKeys {
        RemoteKeys {
            source: source.to_owned(),
            keys: Vec::new(),
            unavailable: Some(why),
        }
    }

    /// The keys of a usable set; empty when unavailable.
    pub fn keys(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.id().as_str() == kid)
    }

    /// Why the set cannot be used, if it cannot.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Where the keys come from.
    pub fn source(&self) -> &str {
        &self.source
    }
}
