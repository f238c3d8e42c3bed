//! The key store: key ids, key material parsed once into ring key objects, each key's algorithm.
//!
//! A [`Key`] is bound to exactly one [`Algorithm`] when it is loaded; that binding is the
//! per-key algorithm allow-list of RFC 8725 §3.1. Key bytes never leave this folder except as
//! public keys, and no type here prints key material in `Debug`.
//!
//! One file per concept, re-exported here so callers name only `keys::X`: `algorithm` (the
//! algorithms and the ring objects each maps to), `id` (the checked key id), `key` (the parsed
//! key that signs and verifies), `pem` (reading key files), `jwk` (publishing a public key and
//! its thumbprint), `jwk_parse` (reading keys given as JWKs and JWK Sets) and `generate` (new key material and the `kid` a generated key gets).

use std::collections::HashMap;
use std::sync::Arc;

mod algorithm;
mod generate;
mod id;
mod jwk;
mod jwk_parse;
mod key;
mod pem;

pub use algorithm::{Algorithm, KeyFamily};
pub use generate::{generate, generate_named, generate_rsa, load_generated};
pub use id::{KeyId, MAX_KEY_ID_BYTES};
pub use jwk::{Jwk, JwkMaterial};
pub use jwk_parse::{JwkExpectations, JwkForm, JwkSet, RefusedJwk};
pub use key::{HmacSecret, Key, SignError};

/// Why key material was refused. Messages name the problem, never the key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "unknown algorithm {0:?}; supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA"
    )]
    UnknownAlgorithm(String),
    #[error(
        "key id {0:?} is not allowed: use 1 to {max} bytes of UTF-8 text without control characters",
        max = MAX_KEY_ID_BYTES
    )]
    BadKeyId(String),
    #[error("HMAC secret is {len} bytes; {alg} needs at least {min} (RFC 7518 §3.2)")]
    SecretTooShort {
        alg: Algorithm,
        len: usize,
        min: usize,
    },
    #[error(
        "{alg} is not an HMAC algorithm; give a private_key_file or public_key_file instead of a secret"
    )]
    SecretForAsymmetric { alg: Algorithm },
    #[error("{alg} is an HMAC algorithm; give a secret_file or secret_env instead of a PEM key")]
    PemForHmac { alg: Algorithm },
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("PEM holds no key block this service reads (found: {found}); expected {expected}")]
    NoKeyBlock {
        found: String,
        expected: &'static str,
    },
    #[error(
        "PEM block \"ENCRYPTED PRIVATE KEY\" is encrypted; decrypt it first (openssl pkcs8 -topk8 -nocrypt)"
    )]
    Encrypted,
    #[error("the key does not fit algorithm {alg} (expected {expected}): {reason}")]
    WrongKeyType {
        alg: Algorithm,
        expected: &'static str,
        reason: String,
    },
    #[error("RSA key is {0}; at least 2048 bits are required")]
    RsaTooSmall(String),
    #[error(
        "the service cannot generate {alg} keys; create one with openssl and name it in the config"
    )]
    CannotGenerate { alg: Algorithm },
    #[error("RSA keys are generated with 2048, 3072 or 4096 bits, not {0}")]
    RsaBits(usize),
    #[error("{0}")]
    NotJwk(String),
    #[error("JWK member {member:?} {reason}")]
    BadJwk { member: String, reason: String },
    #[error("the system random number generator failed")]
    Random,
}

/// Every loaded key by id; built once at start-up, read-only afterwards.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<KeyId, Arc<Key>>,
}

impl KeyStore {
    /// Adds a key; returns the key back if its id is taken.
    pub fn insert(&mut self, key: Key) -> Result<(), Box<Key>> {
        if self.keys.contains_key(key.id()) {
            return Err(Box::new(key));
        }
        self.keys.insert(key.id().clone(), Arc::new(key));
        Ok(())
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Key>> {
        self.keys.get(id)
    }

    /// All keys, sorted by id (for start-up logs and listings).
    pub fn sorted(&self) -> Vec<&Arc<Key>> {
        let mut keys: Vec<_> = self.keys.values().collect();
        keys.sort_by(|a, b| a.id().cmp(b.id()));
        keys
    }
}
