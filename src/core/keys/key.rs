//! A parsed key: one id, one algorithm, and the ring objects that sign and verify with it.

use std::fmt;

use ring::hmac;
use ring::rand::SecureRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaEncoding, RsaKeyPair, UnparsedPublicKey};

use super::{Algorithm, KeyError, KeyFamily, KeyId};

/// HMAC secret bytes, at least as long as the algorithm's hash output; `Debug` shows only the length.
pub struct HmacSecret(Vec<u8>);

impl HmacSecret {
    /// Refuses a secret shorter than the hash output of `alg` (RFC 7518 §3.2).
    pub fn new(alg: Algorithm, bytes: Vec<u8>) -> Result<HmacSecret, KeyError> {
        let Some((_, min)) = alg.hmac_algorithm() else {
            return Err(KeyError::SecretForAsymmetric { alg });
        };
        if bytes.len() < min {
            return Err(KeyError::SecretTooShort {
                alg,
                len: bytes.len(),
                min,
            });
        }
        Ok(HmacSecret(bytes))
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacSecret(<{} bytes>)", self.0.len())
    }
}

/// The private half of a key, as ring holds it once parsed.
pub(super) enum Signer {
    Hmac(hmac::Key),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    /// ES512: ring has no P-521, so RustCrypto's `p521` signs (hedged RFC 6979 nonces).
    P521(Box<p521::ecdsa::SigningKey>),
    Ed25519(Ed25519KeyPair),
}

/// What checks a signature: the shared secret, or the public key bytes bound to one ring
/// verification algorithm.
enum Verifier {
    Hmac(hmac::Key),
    Public(UnparsedPublicKey<Vec<u8>>),
    /// The P-521 public key, parsed once, and its uncompressed point (for the JWK).
    P521(Box<p521::ecdsa::VerifyingKey>, Vec<u8>),
}

/// One loaded key: its id, its one algorithm, and ring objects parsed once at start-up.
pub struct Key {
    id: KeyId,
    algorithm: Algorithm,
    signer: Option<Signer>,
    verifier: Verifier,
}

/// Signing failed inside ring; this is the service's fault, never the caller's.
#[derive(Debug, thiserror::Error)]
#[error("signing with key {key_id:?} failed")]
pub struct SignError {
    pub key_id: KeyId,
}

impl Key {
    /// A key from an HMAC secret: it signs and verifies.
    pub fn from_hmac_secret(
        id: KeyId,
        secret: HmacSecret,
        algorithm: Algorithm,
    ) -> Result<Key, KeyError> {
        let Some((hmac_alg, _)) = algorithm.hmac_algorithm() else {
            return Err(KeyError::SecretForAsymmetric { alg: algorithm });
        };
        let key = hmac::Key::new(hmac_alg, &secret.0);
        Ok(Key {
            id,
            algorithm,
            signer: Some(Signer::Hmac(key.clone())),
            verifier: Verifier::Hmac(key),
        })
    }

    /// Loads key material as [`generate`](super::generate) and
    /// [`generate_rsa`](super::generate_rsa) write it: for HMAC the secret used as written,
    /// otherwise a PEM private key.
    pub fn from_material(id: KeyId, alg: Algorithm, material: &[u8]) -> Result<Key, KeyError> {
        if alg.family() == KeyFamily::Hmac {
            let secret = HmacSecret::new(alg, material.to_vec())?;
            Key::from_hmac_secret(id, secret, alg)
        } else {
            Key::from_private_pem(id, alg, material)
        }
    }

    /// A public-key algorithm's key from its parsed parts: `public` is the key in the form
    /// ring verifies with (PKCS#1 for RSA, the uncompressed point for EC, the raw 32 bytes for
    /// Ed25519), and `signer` is absent for a verify-only key.
    pub(super) fn from_public_parts(
        id: KeyId,
        algorithm: Algorithm,
        signer: Option<Signer>,
        public: Vec<u8>,
    ) -> Result<Key, KeyError> {
        let verifier = if algorithm == Algorithm::ES512 {
            let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&public).map_err(|_| {
                KeyError::WrongKeyType {
                    alg: algorithm,
                    expected: "an EC key on P-521",
                    reason: "the public key is not a point on P-521".into(),
                }
            })?;
            Verifier::P521(Box::new(key), public)
        } else {
            let verification = algorithm
                .verification()
                .ok_or(KeyError::PemForHmac { alg: algorithm })?;
            Verifier::Public(UnparsedPublicKey::new(verification, public))
        };
        Ok(Key {
            id,
            algorithm,
            signer,
            verifier,
        })
    }

    /// The public key bytes in the form [`Key::from_public_parts`] took them; `None` for HMAC.
    pub(super) fn public_bytes(&self) -> Option<&[u8]> {
        match &self.verifier {
            Verifier::Hmac(_) => None,
            Verifier::Public(public) => Some(public.as_ref()),
            Verifier::P521(_, point) => Some(point),
        }
    }

    /// The key id (`kid`).
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The one algorithm this key may be used with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether this key holds private material (or a shared secret) and so can sign.
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// Signs `message` with this key's algorithm; fails for a verify-only key.
    pub fn sign(&self, rng: &dyn SecureRandom, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let fail = || SignError {
            key_id: self.id.clone(),
        };
        match self.signer.as_ref().ok_or_else(fail)? {
            Signer::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            Signer::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, rng, message, &mut sig)
                    .map_err(|_| fail())?;
                Ok(sig)
            }
            Signer::Ecdsa(pair) => Ok(pair
                .sign(rng, message)
                .map_err(|_| fail())?
                .as_ref()
                .to_vec()),
            Signer::P521(key) => {
                use p521::ecdsa::signature::hazmat::PrehashSigner as _;
                // ring hashes, as for every other algorithm; p521 signs the SHA-512 digest with an
                // RFC 6979 nonce hedged with system randomness.
                let digest = ring::digest::digest(&ring::digest::SHA512, message);
                let signature: p521::ecdsa::Signature =
                    key.sign_prehash(digest.as_ref()).map_err(|_| fail())?;
                Ok(signature.to_bytes().to_vec())
            }
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// Checks `signature` over `message` (HMAC in constant time).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Verifier::Public(public) => public.verify(message, signature).is_ok(),
            Verifier::P521(key, _) => {
                use p521::ecdsa::signature::Verifier as _;
                // from_slice takes exactly r || s of 66 bytes each (RFC 7518 §3.4), nothing else.
                p521::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|signature| key.verify(message, &signature).is_ok())
            }
        }
    }

    /// The same key under another id: a generated key is parsed once, then named after its
    /// RFC 7638 thumbprint.
    pub fn with_id(mut self, id: KeyId) -> Key {
        self.id = id;
        self
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.can_sign())
            .finish_non_exhaustive()
    }
}
