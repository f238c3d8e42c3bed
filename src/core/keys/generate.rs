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
        KeyFamily::Ecdsa if alg == Algorithm::ES512 => return generate_p521(rng),
        KeyFamily::Ecdsa => {
            let signing = alg
                .ecdsa_signing()
                .ok_or(KeyError::CannotGenerate { alg })?;
            EcdsaKeyPair::generate_pkcs8(signing, rng).map_err(|_| KeyError::Random)?
        }
        KeyFamily::Ed25519 => {
            let mut seed = [0u8; 32];
            rng.fill(&mut seed).map_err(|_| KeyError::Random)?;
            let der = ed25519_pkcs8_v1(&seed);
            // Loaded back once so a file ring could not read is never written.
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| KeyError::Random)?;
            return Ok(private_key_pem(der));
        }
    };
    Ok(private_key_pem(pkcs8.as_ref().to_vec()))
}

/// A new P-521 private key as PKCS#8 PEM, its scalar drawn from `rng` like every other key.
fn generate_p521(rng: &dyn SecureRandom) -> Result<String, KeyError> {
    use p521::pkcs8::EncodePrivateKey as _;
    // A 521-bit scalar in 66 bytes; the few draws at or above the group order are drawn again.
    for _ in 0..64 {
        let mut bytes = [0u8; 66];
        rng.fill(&mut bytes).map_err(|_| KeyError::Random)?;
        bytes[0] &= 0x01;
        if let Ok(secret) = p521::SecretKey::from_slice(&bytes) {
            let der = secret.to_pkcs8_der().map_err(|_| KeyError::Random)?;
            return Ok(private_key_pem(der.as_bytes().to_vec()));
        }
    }
    Err(KeyError::Random)
}

/// DER as a "PRIVATE KEY" PEM block, the form every generated key file takes.
fn private_key_pem(der: Vec<u8>) -> String {
    pem::encode(&pem::Pem::new("PRIVATE KEY", der))
}

/// The DER prefix of an RFC 8410 §7 `OneAsymmetricKey` v1 for Ed25519: version 0, algorithm
/// id-Ed25519 (1.3.101.112), then the 32-byte seed as an OCTET STRING inside the privateKey
/// OCTET STRING.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 private key as PKCS#8 v1 (RFC 8410). ring writes v2, which adds the public key;
/// OpenSSL 3.0 and Python `cryptography` refuse that form, and every tool reads v1.
fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
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
        for alg in [
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::ES512,
            Algorithm::EdDSA,
        ] {
            let (key, material) = generate_named(alg, &rng).unwrap();

            let again = load_generated(alg, material.as_bytes(), &rng).unwrap();

            assert_eq!(Some(key.id().as_str().to_owned()), key.thumbprint());
            assert_eq!(key.id(), again.id());
        }
    }

    #[test]
    fn a_generated_ed25519_key_file_is_the_rfc_8410_v1_document() {
        let rng = SystemRandom::new();
        let material = generate(Algorithm::EdDSA, &rng).unwrap();

        let der = pem::parse(&material).unwrap().into_contents();

        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
    }

    #[test]
    fn ring_s_pkcs8_v2_ed25519_files_still_load() {
        let rng = SystemRandom::new();
        let v2 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let material = private_key_pem(v2.as_ref().to_vec());

        let key = Key::from_private_pem(
            KeyId::parse("v2").unwrap(),
            Algorithm::EdDSA,
            material.as_bytes(),
        );

        assert!(key.unwrap().can_sign());
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
