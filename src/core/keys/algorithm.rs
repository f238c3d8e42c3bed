//! The JWS algorithms, the key family each needs, and the ring objects each maps to (ES512,
//! which ring lacks, is RustCrypto's `p521`; see `key.rs`).

use std::fmt;

use ring::hmac;
use ring::signature::{self, RsaEncoding};

use super::KeyError;

/// The JWS algorithms the service signs and verifies with (RFC 7518 §3.1, RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

/// The kind of key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Hmac,
    Rsa,
    Ecdsa,
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm, in the order the docs list them.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// The `alg` header value, exactly as RFC 7518 spells it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` value; case-sensitive, as JOSE is. `none` is not an algorithm here.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Which kind of key this algorithm needs.
    pub fn family(self) -> KeyFamily {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512 => KeyFamily::Ecdsa,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// Whether the service can create a key for this algorithm itself (ring cannot make RSA keys).
    pub fn can_generate(self) -> bool {
        self.family() != KeyFamily::Rsa
    }

    /// The ring HMAC algorithm and its output length, the shortest secret RFC 7518 §3.2
    /// allows; `None` for a public-key algorithm.
    pub(super) fn hmac_algorithm(self) -> Option<(hmac::Algorithm, usize)> {
        match self {
            Algorithm::HS256 => Some((hmac::HMAC_SHA256, 32)),
            Algorithm::HS384 => Some((hmac::HMAC_SHA384, 48)),
            Algorithm::HS512 => Some((hmac::HMAC_SHA512, 64)),
            _ => None,
        }
    }

    /// The ring padding and hash an RSA algorithm signs with; `None` for the others.
    pub(super) fn rsa_encoding(self) -> Option<&'static dyn RsaEncoding> {
        match self {
            Algorithm::RS256 => Some(&signature::RSA_PKCS1_SHA256),
            Algorithm::RS384 => Some(&signature::RSA_PKCS1_SHA384),
            Algorithm::RS512 => Some(&signature::RSA_PKCS1_SHA512),
            Algorithm::PS256 => Some(&signature::RSA_PSS_SHA256),
            Algorithm::PS384 => Some(&signature::RSA_PSS_SHA384),
            Algorithm::PS512 => Some(&signature::RSA_PSS_SHA512),
            _ => None,
        }
    }

    /// The ring curve and hash an ECDSA algorithm signs with; `None` for the others.
    pub(super) fn ecdsa_signing(self) -> Option<&'static signature::EcdsaSigningAlgorithm> {
        match self {
            Algorithm::ES256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            Algorithm::ES384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => None,
        }
    }

    /// The ring verification algorithm for public-key algorithms; `None` for HMAC and for
    /// ES512, which ring does not have.
    pub(super) fn verification(self) -> Option<&'static dyn signature::VerificationAlgorithm> {
        Some(match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 | Algorithm::ES512 => {
                return None;
            }
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(s).ok_or_else(|| KeyError::UnknownAlgorithm(s.to_owned()))
    }
}
