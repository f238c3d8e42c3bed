//! New key material, written as a key file holds it and loaded back through ring like any
//! other key, and the `kid` a generated key gets. No generated key is named after its secret.

use ring::rand::SecureRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair};

use super::jwk::b64;
use super::{Algorithm, Key, KeyError, KeyFamily, KeyId};

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

/// New key material for `alg` and the key loaded from it, already named as
/// [`load_generated`] names it; the material is the text its key file holds.
pub fn generate_named(alg: Algorithm, rng: &dyn SecureRandom) -> Result<(Key, String), KeyError> {
    let material = generate(alg, rng)?;
    let key = load_generated(alg, material.as_bytes(), rng)?;
    Ok((key, material))
}

/// Loads material as [`generate`] or [`generate_rsa`] wrote it, named as every generated key
/// is: by the RFC 7638 thumbprint of its public key, or for HMAC by 16 random bytes in
/// base64url, since a kid derived from a secret would let anyone who sees it test guesses at
/// the secret offline.
pub fn load_generated(
    alg: Algorithm,
    material: &[u8],
    rng: &dyn SecureRandom,
) -> Result<Key, KeyError> {
    // The key is parsed under a stand-in id because its thumbprint comes from the parsed key.
    let key = Key::from_material(KeyId::parse("new")?, alg, material)?;
    let kid = match key.thumbprint() {
        Some(thumbprint) => thumbprint,
        None => {
            let mut bytes = [0u8; 16];
            rng.fill(&mut bytes).map_err(|_| KeyError::Random)?;
            b64(&bytes)
        }
    };
    Ok(key.with_id(KeyId::parse(&kid)?))
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    #[test]
    fn a_generated_public_key_is_named_by_its_thumbprint_however_often_it_is_loaded() {
        let rng = SystemRandom::new();
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let (key, material) = generate_named(alg, &rng).unwrap();

            let again = load_generated(alg, material.as_bytes(), &rng).unwrap();

            assert_eq!(Some(key.id().as_str().to_owned()), key.thumbprint());
            assert_eq!(key.id(), again.id());
        }
    }

    #[test]
    fn a_generated_hmac_key_is_named_by_random_bytes_never_by_its_secret() {
        let rng = SystemRandom::new();
        let (key, material) = generate_named(Algorithm::HS256, &rng).unwrap();

        let again = load_generated(Algorithm::HS256, material.as_bytes(), &rng).unwrap();

        assert_eq!(key.id().as_str().len(), 22);
        assert_ne!(key.id(), again.id());
    }
}
