//! The key store: key ids, key material parsed once into ring key objects, each key's algorithm.
//!
//! A [`Key`] is bound to exactly one [`Algorithm`] when it is loaded; that binding is the
//! per-key algorithm allow-list of RFC 8725 §3.1. Key bytes never leave this module except as
//! public keys, and no type here prints key material in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use ring::{hmac, signature::RsaEncoding};

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
    pub const ALL: [Algorithm; 12] = [
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
            Algorithm::ES256 | Algorithm::ES384 => KeyFamily::Ecdsa,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// Whether the service can create a key for this algorithm itself (ring cannot make RSA keys).
    pub fn can_generate(self) -> bool {
        self.family() != KeyFamily::Rsa
    }

    fn hmac_algorithm(self) -> Option<(hmac::Algorithm, usize)> {
        match self {
            Algorithm::HS256 => Some((hmac::HMAC_SHA256, 32)),
            Algorithm::HS384 => Some((hmac::HMAC_SHA384, 48)),
            Algorithm::HS512 => Some((hmac::HMAC_SHA512, 64)),
            _ => None,
        }
    }

    fn rsa_encoding(self) -> Option<&'static dyn RsaEncoding> {
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

    fn ecdsa_signing(self) -> Option<&'static signature::EcdsaSigningAlgorithm> {
        match self {
            Algorithm::ES256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            Algorithm::ES384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => None,
        }
    }

    /// The ring verification algorithm for public-key algorithms; `None` for HMAC.
    fn verification(self) -> Option<&'static dyn signature::VerificationAlgorithm> {
        Some(match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None,
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

/// Why key material was refused. Messages name the problem, never the key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "unknown algorithm {0:?}; supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
    )]
    UnknownAlgorithm(String),
    #[error("key id {0:?} is not allowed: use 1 to 128 characters from A-Z a-z 0-9 . _ - : + / =")]
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
    #[error("the system random number generator failed")]
    Random,
}

/// A key id (`kid`): checked once, so it is safe in a header, a log line and a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Accepts 1 to 128 characters from a conservative set, refusing anything else.
    pub fn parse(id: &str) -> Result<KeyId, KeyError> {
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:+/=".contains(&b));
        if ok {
            Ok(KeyId(id.to_owned()))
        } else {
            Err(KeyError::BadKeyId(id.to_owned()))
        }
    }

    /// The id as it appears in the `kid` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

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

enum Signer {
    Hmac(hmac::Key),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

enum Verifier {
    Hmac(hmac::Key),
    Public(UnparsedPublicKey<Vec<u8>>),
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
#[error("signing with key {key_id} failed")]
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

    /// A key from a PEM private key (PKCS#8, or SEC1 for EC, or PKCS#1 for RSA): signs and verifies.
    pub fn from_private_pem(
        id: KeyId,
        algorithm: Algorithm,
        pem_text: &[u8],
    ) -> Result<Key, KeyError> {
        let family = algorithm.family();
        if family == KeyFamily::Hmac {
            return Err(KeyError::PemForHmac { alg: algorithm });
        }
        let blocks = pem::parse_many(pem_text).map_err(|e| KeyError::NotPem(e.to_string()))?;
        let expected = "a \"PRIVATE KEY\" (PKCS#8), \"EC PRIVATE KEY\" (SEC1) or \"RSA PRIVATE KEY\" (PKCS#1) block";
        let block = blocks
            .iter()
            .find(|b| {
                matches!(
                    b.tag(),
                    "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY"
                )
            })
            .ok_or_else(|| KeyError::NoKeyBlock {
                found: found_tags(&blocks),
                expected,
            })?;
        let der = block.contents();
        let wrong = |expected: &'static str, reason: String| KeyError::WrongKeyType {
            alg: algorithm,
            expected,
            reason,
        };
        let rng = SystemRandom::new();
        let (signer, public): (Signer, Vec<u8>) = match (block.tag(), family) {
            ("ENCRYPTED PRIVATE KEY", _) => return Err(KeyError::Encrypted),
            ("PRIVATE KEY" | "RSA PRIVATE KEY", KeyFamily::Rsa) => {
                let pair = if block.tag() == "PRIVATE KEY" {
                    RsaKeyPair::from_pkcs8(der)
                } else {
                    RsaKeyPair::from_der(der)
                }
                .map_err(|e| rsa_rejected(algorithm, e))?;
                check_rsa_bits(algorithm, pair.public().as_ref())?;
                let public = pair.public().as_ref().to_vec();
                let encoding = algorithm
                    .rsa_encoding()
                    .ok_or(KeyError::UnknownAlgorithm(algorithm.to_string()))?;
                (Signer::Rsa(pair, encoding), public)
            }
            ("PRIVATE KEY", KeyFamily::Ecdsa) => {
                let alg = algorithm
                    .ecdsa_signing()
                    .ok_or(KeyError::UnknownAlgorithm(algorithm.to_string()))?;
                let pair = EcdsaKeyPair::from_pkcs8(alg, der, &rng)
                    .map_err(|e| wrong(curve_name(algorithm), ring_reason(e)))?;
                let public = pair.public_key().as_ref().to_vec();
                (Signer::Ecdsa(pair), public)
            }
            ("EC PRIVATE KEY", KeyFamily::Ecdsa) => {
                let alg = algorithm
                    .ecdsa_signing()
                    .ok_or(KeyError::UnknownAlgorithm(algorithm.to_string()))?;
                let sec1 = sec1::EcPrivateKey::try_from(der)
                    .map_err(|e| wrong(curve_name(algorithm), format!("SEC1: {e}")))?;
                let Some(public) = sec1.public_key else {
                    return Err(wrong(
                        curve_name(algorithm),
                        "SEC1 key without its public key; convert it with openssl pkcs8 -topk8 -nocrypt".into(),
                    ));
                };
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    alg,
                    sec1.private_key,
                    public,
                    &rng,
                )
                .map_err(|e| wrong(curve_name(algorithm), ring_reason(e)))?;
                let public = pair.public_key().as_ref().to_vec();
                (Signer::Ecdsa(pair), public)
            }
            ("PRIVATE KEY", KeyFamily::Ed25519) => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| wrong("an Ed25519 key", ring_reason(e)))?;
                let public = pair.public_key().as_ref().to_vec();
                (Signer::Ed25519(pair), public)
            }
            (tag, _) => {
                return Err(wrong(
                    family_name(family),
                    format!("a \"{tag}\" block cannot hold such a key"),
                ));
            }
        };
        let verification = algorithm
            .verification()
            .ok_or(KeyError::PemForHmac { alg: algorithm })?;
        Ok(Key {
            id,
            algorithm,
            signer: Some(signer),
            verifier: Verifier::Public(UnparsedPublicKey::new(verification, public)),
        })
    }

    /// A verify-only key from a PEM public key ("PUBLIC KEY" SPKI, or "RSA PUBLIC KEY" PKCS#1).
    pub fn from_public_pem(
        id: KeyId,
        algorithm: Algorithm,
        pem_text: &[u8],
    ) -> Result<Key, KeyError> {
        let family = algorithm.family();
        let Some(verification) = algorithm.verification() else {
            return Err(KeyError::PemForHmac { alg: algorithm });
        };
        let blocks = pem::parse_many(pem_text).map_err(|e| KeyError::NotPem(e.to_string()))?;
        let block = blocks
            .iter()
            .find(|b| matches!(b.tag(), "PUBLIC KEY" | "RSA PUBLIC KEY"))
            .ok_or_else(|| KeyError::NoKeyBlock {
                found: found_tags(&blocks),
                expected: "a \"PUBLIC KEY\" (SPKI) or \"RSA PUBLIC KEY\" (PKCS#1) block",
            })?;
        let wrong = |reason: String| KeyError::WrongKeyType {
            alg: algorithm,
            expected: family_name(family),
            reason,
        };
        let public: Vec<u8> = if block.tag() == "RSA PUBLIC KEY" {
            if family != KeyFamily::Rsa {
                return Err(wrong("an \"RSA PUBLIC KEY\" block holds an RSA key".into()));
            }
            block.contents().to_vec()
        } else {
            let spki = spki::SubjectPublicKeyInfoRef::try_from(block.contents())
                .map_err(|e| wrong(format!("SubjectPublicKeyInfo: {e}")))?;
            let oid = spki.algorithm.oid;
            let found = if oid == OID_RSA {
                KeyFamily::Rsa
            } else if oid == OID_EC {
                KeyFamily::Ecdsa
            } else if oid == OID_ED25519 {
                KeyFamily::Ed25519
            } else {
                return Err(wrong(format!("unsupported key type (OID {oid})")));
            };
            if found != family {
                return Err(wrong(format!("the file holds {}", family_name(found))));
            }
            if family == KeyFamily::Ecdsa {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|e| wrong(format!("EC parameters: {e}")))?;
                let want = if algorithm == Algorithm::ES256 {
                    OID_P256
                } else {
                    OID_P384
                };
                if curve != want {
                    return Err(wrong(format!("the key is on another curve (OID {curve})")));
                }
            }
            spki.subject_public_key
                .as_bytes()
                .ok_or_else(|| wrong("the public key bit string is not whole bytes".into()))?
                .to_vec()
        };
        if family == KeyFamily::Rsa {
            check_rsa_bits(algorithm, &public)?;
        }
        Ok(Key {
            id,
            algorithm,
            signer: None,
            verifier: Verifier::Public(UnparsedPublicKey::new(verification, public)),
        })
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
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// Checks `signature` over `message` (HMAC in constant time).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Verifier::Public(public) => public.verify(message, signature).is_ok(),
        }
    }
}

impl Key {
    /// The public key as a JWK (RFC 7517) with `kid`, `alg` and `use: "sig"`; `None` for HMAC,
    /// whose secret is never published.
    pub fn public_jwk(&self) -> Option<Jwk> {
        let Verifier::Public(public) = &self.verifier else {
            return None;
        };
        let bytes = public.as_ref();
        let material = match self.algorithm.family() {
            KeyFamily::Hmac => return None,
            KeyFamily::Ecdsa => {
                // ring keeps EC public keys as the uncompressed point 0x04 || x || y.
                let coords = bytes.strip_prefix(&[0x04])?;
                let (x, y) = coords.split_at(coords.len() / 2);
                let crv = if self.algorithm == Algorithm::ES384 {
                    "P-384"
                } else {
                    "P-256"
                };
                JwkMaterial::Ec {
                    crv,
                    x: b64(x),
                    y: b64(y),
                }
            }
            KeyFamily::Ed25519 => JwkMaterial::Okp { x: b64(bytes) },
            KeyFamily::Rsa => {
                use pkcs1::der::Decode as _;
                // ring keeps RSA public keys as PKCS#1 RSAPublicKey DER, checked at load.
                let key = pkcs1::RsaPublicKey::from_der(bytes).ok()?;
                JwkMaterial::Rsa {
                    n: b64(strip_zeros(key.modulus.as_bytes())),
                    e: b64(strip_zeros(key.public_exponent.as_bytes())),
                }
            }
        };
        Some(Jwk {
            kid: self.id.as_str().to_owned(),
            alg: self.algorithm,
            material,
        })
    }
}

/// A public key in JWK form; HMAC keys have none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    pub kid: String,
    pub alg: Algorithm,
    pub material: JwkMaterial,
}

/// The key-type members of a JWK, already base64url-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwkMaterial {
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
    Okp {
        x: String,
    },
    Rsa {
        n: String,
        e: String,
    },
}

impl Jwk {
    /// `kty` of this key: "EC", "OKP" or "RSA".
    pub fn kty(&self) -> &'static str {
        match self.material {
            JwkMaterial::Ec { .. } => "EC",
            JwkMaterial::Okp { .. } => "OKP",
            JwkMaterial::Rsa { .. } => "RSA",
        }
    }

    /// The JWK as a JSON object: kty, kid, alg, use, then the key-type members.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        let mut put = |k: &str, v: &str| {
            map.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
        };
        put("kty", self.kty());
        put("kid", &self.kid);
        put("alg", self.alg.name());
        put("use", "sig");
        match &self.material {
            JwkMaterial::Ec { crv, x, y } => {
                put("crv", crv);
                put("x", x);
                put("y", y);
            }
            JwkMaterial::Okp { x } => {
                put("crv", "Ed25519");
                put("x", x);
            }
            JwkMaterial::Rsa { n, e } => {
                put("n", n);
                put("e", e);
            }
        }
        map
    }

    /// The RFC 7638 thumbprint: base64url SHA-256 of the required members in lexicographic
    /// order, without whitespace. Generated keys take it as their `kid`.
    pub fn thumbprint(&self) -> String {
        // Every member value is base64url or a fixed name, so none needs JSON escaping.
        let canonical = match &self.material {
            JwkMaterial::Ec { crv, x, y } => {
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            JwkMaterial::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            JwkMaterial::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

impl Key {
    /// Loads key material as [`generate`] and [`generate_rsa`] write it: for HMAC the secret
    /// used as written, otherwise a PEM private key.
    pub fn from_material(id: KeyId, alg: Algorithm, material: &[u8]) -> Result<Key, KeyError> {
        if alg.family() == KeyFamily::Hmac {
            let secret = HmacSecret::new(alg, material.to_vec())?;
            Key::from_hmac_secret(id, secret, alg)
        } else {
            Key::from_private_pem(id, alg, material)
        }
    }

    /// The same key under another id: a generated key is parsed once, then named after its
    /// RFC 7638 thumbprint.
    pub fn with_id(mut self, id: KeyId) -> Key {
        self.id = id;
        self
    }

    /// The RFC 7638 thumbprint of the public key, the `kid` a generated key gets; `None` for
    /// HMAC.
    pub fn thumbprint(&self) -> Option<String> {
        self.public_jwk().map(|jwk| jwk.thumbprint())
    }
}

/// A new RSA private key of `bits` (2048, 3072 or 4096) as PKCS#8 PEM. ring cannot make RSA
/// keys, so the RustCrypto `rsa` crate does, and the key is then loaded through ring like any
/// other.
pub fn generate_rsa(bits: usize) -> Result<String, KeyError> {
    use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
    if ![2048, 3072, 4096].contains(&bits) {
        return Err(KeyError::RsaBits(bits));
    }
    let key =
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|_| KeyError::Random)?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::Random)?;
    Ok(pem.to_string())
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

impl std::borrow::Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// New key material for `alg`, as the text a key file holds: a PKCS#8 PEM private key, or for
/// HMAC a base64url secret of as many random bytes as the hash output (used as written).
pub fn generate(alg: Algorithm, rng: &dyn SecureRandom) -> Result<String, KeyError> {
    let pkcs8 = match alg.family() {
        KeyFamily::Hmac => {
            let (_, len) = alg
                .hmac_algorithm()
                .ok_or(KeyError::CannotGenerate { alg })?;
            let mut bytes = vec![0u8; len];
            rng.fill(&mut bytes).map_err(|_| KeyError::Random)?;
            use base64::Engine as _;
            return Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        }
        KeyFamily::Rsa => return Err(KeyError::CannotGenerate { alg }),
        KeyFamily::Ecdsa => {
            let signing = alg
                .ecdsa_signing()
                .ok_or(KeyError::CannotGenerate { alg })?;
            EcdsaKeyPair::generate_pkcs8(signing, rng).map_err(|_| KeyError::Random)?
        }
        KeyFamily::Ed25519 => Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| KeyError::Random)?,
    };
    Ok(pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        pkcs8.as_ref().to_vec(),
    )))
}

const OID_RSA: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.101.112");

fn found_tags(blocks: &[pem::Pem]) -> String {
    if blocks.is_empty() {
        return "no PEM blocks".into();
    }
    blocks
        .iter()
        .map(|b| format!("\"{}\"", b.tag()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn family_name(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Hmac => "an HMAC secret",
        KeyFamily::Rsa => "an RSA key",
        KeyFamily::Ecdsa => "an EC key",
        KeyFamily::Ed25519 => "an Ed25519 key",
    }
}

fn curve_name(alg: Algorithm) -> &'static str {
    if alg == Algorithm::ES384 {
        "an EC key on P-384"
    } else {
        "an EC key on P-256"
    }
}

fn rsa_rejected(alg: Algorithm, e: ring::error::KeyRejected) -> KeyError {
    // ring names its reasons only through this text; an unknown one still reads sensibly below.
    if e.to_string() == "TooSmall" {
        KeyError::RsaTooSmall("under 2048 bits".into())
    } else {
        KeyError::WrongKeyType {
            alg,
            expected: "an RSA key",
            reason: ring_reason(e),
        }
    }
}

/// ring's terse reason for refusing a key, as a sentence an operator can act on.
fn ring_reason(e: ring::error::KeyRejected) -> String {
    let text = e.to_string();
    let sentence = match text.as_str() {
        "WrongAlgorithm" => "the file holds a key of another type or curve",
        "InvalidEncoding" => "the key's DER encoding is not what this key type needs",
        "VersionNotSupported" => "the PKCS#8 version is not supported",
        "PublicKeyIsMissing" => "the private key does not carry its public key",
        "InconsistentComponents" => "the key's parts do not belong together",
        "InvalidComponent" => "a part of the key is out of range",
        "TooLarge" => "the key is larger than supported (RSA up to 8192 bits)",
        _ => return format!("ring refused the key ({text})"),
    };
    format!("{sentence} (ring: {text})")
}

/// Refuses RSA moduli under 2048 bits, reading the PKCS#1 `RSAPublicKey` DER.
fn check_rsa_bits(alg: Algorithm, pkcs1_der: &[u8]) -> Result<(), KeyError> {
    use pkcs1::der::Decode as _;
    let key = pkcs1::RsaPublicKey::from_der(pkcs1_der).map_err(|e| KeyError::WrongKeyType {
        alg,
        expected: "an RSA key",
        reason: format!("RSAPublicKey: {e}"),
    })?;
    let n = key.modulus.as_bytes();
    let bits = match n.iter().position(|&b| b != 0) {
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
        None => 0,
    };
    if bits < 2048 {
        return Err(KeyError::RsaTooSmall(format!("{bits} bits")));
    }
    Ok(())
}
