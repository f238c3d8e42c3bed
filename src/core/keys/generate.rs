//! New key material, written as a key file holds it and loaded back through ring like any
//! other key.

use ring::rand::SecureRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair};

use super::jwk::b64;
use super::{Algorithm, KeyError, KeyFamily};

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
            return Ok(b64(&bytes));
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
