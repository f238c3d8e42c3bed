//! Public keys as JWKs (RFC 7517) and their RFC 7638 thumbprints. An HMAC key has no JWK: its
//! secret is never published, and neither is anything derived from it.

use super::{Algorithm, Key, KeyFamily};

impl Key {
    /// The public key as a JWK (RFC 7517) with `kid`, `alg` and `use: "sig"`; `None` for HMAC,
    /// whose secret is never published.
    pub fn public_jwk(&self) -> Option<Jwk> {
        let bytes = self.public_bytes()?;
        let algorithm = self.algorithm();
        let material = match algorithm.family() {
            KeyFamily::Hmac => return None,
            KeyFamily::Ecdsa => {
                // ring keeps EC public keys as the uncompressed point 0x04 || x || y.
                let coords = bytes.strip_prefix(&[0x04])?;
                let (x, y) = coords.split_at(coords.len() / 2);
                let crv = match algorithm {
                    Algorithm::ES384 => "P-384",
                    Algorithm::ES512 => "P-521",
                    _ => "P-256",
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
            kid: self.id().as_str().to_owned(),
            alg: algorithm,
            material,
        })
    }

    /// The RFC 7638 thumbprint of the public key, the `kid` a generated key gets; `None` for
    /// HMAC.
    pub fn thumbprint(&self) -> Option<String> {
        self.public_jwk().map(|jwk| jwk.thumbprint())
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

/// Base64url without padding, the encoding of every JOSE binary value.
pub(super) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian integer without its leading zero bytes, as RFC 7518 §6.3.1 writes `n` and `e`.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}
