//! PEM key files: PKCS#8, SEC1 and PKCS#1 private keys; SPKI and PKCS#1 public keys. Each is
//! checked against the one algorithm its key is bound to before ring sees it, so a refusal
//! names what the file holds and what the algorithm needs.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use super::key::Signer;
use super::{Algorithm, Key, KeyError, KeyFamily, KeyId};

impl Key {
    /// A key from a PEM private key (PKCS#8, or SEC1 for EC, or PKCS#1 for RSA): signs and verifies.
    pub fn from_private_pem(
        id: KeyId,
        algorithm: Algorithm,
        pem_text: &[u8],
    ) -> Result<Key, KeyError> {
        let (signer, public) = private_key(algorithm, pem_text)?;
        Key::from_public_parts(id, algorithm, Some(signer), public)
    }

    /// A verify-only key from a PEM public key ("PUBLIC KEY" SPKI, or "RSA PUBLIC KEY" PKCS#1).
    pub fn from_public_pem(
        id: KeyId,
        algorithm: Algorithm,
        pem_text: &[u8],
    ) -> Result<Key, KeyError> {
        Key::from_public_parts(id, algorithm, None, public_key(algorithm, pem_text)?)
    }
}

/// The PEM blocks a private key is read from, the encrypted one only to say so.
const PRIVATE_TAGS: &[&str] = &[
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
];
/// [`PRIVATE_TAGS`] as an error names them.
const PRIVATE_EXPECTED: &str =
    "a \"PRIVATE KEY\" (PKCS#8), \"EC PRIVATE KEY\" (SEC1) or \"RSA PRIVATE KEY\" (PKCS#1) block";
/// The PEM blocks a public key is read from.
const PUBLIC_TAGS: &[&str] = &["PUBLIC KEY", "RSA PUBLIC KEY"];
/// [`PUBLIC_TAGS`] as an error names them.
const PUBLIC_EXPECTED: &str = "a \"PUBLIC KEY\" (SPKI) or \"RSA PUBLIC KEY\" (PKCS#1) block";

/// The signer and public key of the private key in `pem_text`, parsed by its block's format.
fn private_key(algorithm: Algorithm, pem_text: &[u8]) -> Result<(Signer, Vec<u8>), KeyError> {
    let block = key_block(algorithm, pem_text, PRIVATE_TAGS, PRIVATE_EXPECTED)?;
    let der = block.contents();
    match (block.tag(), algorithm.family()) {
        ("ENCRYPTED PRIVATE KEY", _) => Err(KeyError::Encrypted),
        (tag @ ("PRIVATE KEY" | "RSA PRIVATE KEY"), KeyFamily::Rsa) => {
            rsa_signer(algorithm, tag, der)
        }
        (tag @ ("PRIVATE KEY" | "EC PRIVATE KEY"), KeyFamily::Ecdsa) => {
            ecdsa_signer(algorithm, tag, der)
        }
        ("PRIVATE KEY", KeyFamily::Ed25519) => ed25519_signer(algorithm, der),
        (tag, family) => Err(mismatch(
            algorithm,
            family_name(family),
            format!("a \"{tag}\" block cannot hold such a key"),
        )),
    }
}

/// The public key in `pem_text`, in the form ring verifies with.
fn public_key(algorithm: Algorithm, pem_text: &[u8]) -> Result<Vec<u8>, KeyError> {
    let block = key_block(algorithm, pem_text, PUBLIC_TAGS, PUBLIC_EXPECTED)?;
    let family = algorithm.family();
    let public = if block.tag() == "RSA PUBLIC KEY" {
        if family != KeyFamily::Rsa {
            return Err(mismatch(
                algorithm,
                family_name(family),
                "an \"RSA PUBLIC KEY\" block holds an RSA key".into(),
            ));
        }
        block.contents().to_vec()
    } else {
        spki_public_key(algorithm, block.contents())?
    };
    if family == KeyFamily::Rsa {
        check_rsa_bits(algorithm, &public)?;
    }
    Ok(public)
}

/// The first block of `pem_text` whose tag is one of `tags`; the error lists what was there.
/// An HMAC algorithm is refused before the text is read: its key is a secret, never PEM.
fn key_block(
    algorithm: Algorithm,
    pem_text: &[u8],
    tags: &[&str],
    expected: &'static str,
) -> Result<pem::Pem, KeyError> {
    if algorithm.family() == KeyFamily::Hmac {
        return Err(KeyError::PemForHmac { alg: algorithm });
    }
    let mut blocks = pem::parse_many(pem_text).map_err(|e| KeyError::NotPem(e.to_string()))?;
    match blocks.iter().position(|b| tags.contains(&b.tag())) {
        Some(i) => Ok(blocks.swap_remove(i)),
        None => Err(KeyError::NoKeyBlock {
            found: found_tags(&blocks),
            expected,
        }),
    }
}

/// An RSA private key from a PKCS#8 ("PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY") block, with
/// its public key in PKCS#1 form.
fn rsa_signer(algorithm: Algorithm, tag: &str, der: &[u8]) -> Result<(Signer, Vec<u8>), KeyError> {
    let pair = if tag == "PRIVATE KEY" {
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
    Ok((Signer::Rsa(pair, encoding), public))
}

/// An EC private key on the curve of `algorithm`, from a PKCS#8 ("PRIVATE KEY") or SEC1
/// ("EC PRIVATE KEY") block, with its public key as the uncompressed point.
fn ecdsa_signer(
    algorithm: Algorithm,
    tag: &str,
    der: &[u8],
) -> Result<(Signer, Vec<u8>), KeyError> {
    let wrong = |reason: String| mismatch(algorithm, curve_name(algorithm), reason);
    if algorithm == Algorithm::ES512 {
        return p521_signer(tag, der).map_err(wrong);
    }
    let signing = algorithm
        .ecdsa_signing()
        .ok_or(KeyError::UnknownAlgorithm(algorithm.to_string()))?;
    let rng = SystemRandom::new();
    let pair = if tag == "EC PRIVATE KEY" {
        let sec1 = sec1::EcPrivateKey::try_from(der).map_err(|e| wrong(format!("SEC1: {e}")))?;
        // ring builds a SEC1 key only from both halves; it does not derive the public point.
        let Some(public) = sec1.public_key else {
            return Err(wrong(
                "SEC1 key without its public key; convert it with openssl pkcs8 -topk8 -nocrypt"
                    .into(),
            ));
        };
        EcdsaKeyPair::from_private_key_and_public_key(signing, sec1.private_key, public, &rng)
    } else {
        EcdsaKeyPair::from_pkcs8(signing, der, &rng)
    }
    .map_err(|e| wrong(ring_reason(e)))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok((Signer::Ecdsa(pair), public))
}

/// A P-521 private key (ES512) from a PKCS#8 or SEC1 block, with its uncompressed public point.
/// The curve is checked by the parser: a key on another curve is refused.
fn p521_signer(tag: &str, der: &[u8]) -> Result<(Signer, Vec<u8>), String> {
    use p521::pkcs8::DecodePrivateKey as _;
    let secret = if tag == "EC PRIVATE KEY" {
        p521::SecretKey::from_sec1_der(der).map_err(|e| format!("SEC1: {e}"))?
    } else {
        p521::SecretKey::from_pkcs8_der(der).map_err(|e| format!("PKCS#8: {e}"))?
    };
    let signing = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes())
        .map_err(|_| "the private scalar is out of range".to_owned())?;
    let public = p521::ecdsa::VerifyingKey::from(&signing)
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    Ok((Signer::P521(Box::new(signing)), public))
}

/// An Ed25519 private key from a PKCS#8 block, with its raw 32-byte public key.
fn ed25519_signer(algorithm: Algorithm, der: &[u8]) -> Result<(Signer, Vec<u8>), KeyError> {
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|e| mismatch(algorithm, "an Ed25519 key", ring_reason(e)))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok((Signer::Ed25519(pair), public))
}

/// The key bytes of a SubjectPublicKeyInfo, after checking that its key type (and for EC its
/// curve) is the one `algorithm` needs.
fn spki_public_key(algorithm: Algorithm, der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let family = algorithm.family();
    let wrong = |reason: String| mismatch(algorithm, family_name(family), reason);
    let spki = spki::SubjectPublicKeyInfoRef::try_from(der)
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
        let want = match algorithm {
            Algorithm::ES256 => OID_P256,
            Algorithm::ES384 => OID_P384,
            _ => OID_P521,
        };
        if curve != want {
            return Err(wrong(format!("the key is on another curve (OID {curve})")));
        }
    }
    Ok(spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| wrong("the public key bit string is not whole bytes".into()))?
        .to_vec())
}

/// The key does not fit `alg`: `expected` names the key it needs, `reason` what is wrong.
fn mismatch(alg: Algorithm, expected: &'static str, reason: String) -> KeyError {
    KeyError::WrongKeyType {
        alg,
        expected,
        reason,
    }
}

// `new_unwrap` runs in const evaluation, so a malformed OID stops the build, never a request.
const OID_RSA: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.101.112");

/// The tags of `blocks`, quoted, for an error that says what the file holds instead.
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

/// The key a family needs, as an error message names it.
fn family_name(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Hmac => "an HMAC secret",
        KeyFamily::Rsa => "an RSA key",
        KeyFamily::Ecdsa => "an EC key",
        KeyFamily::Ed25519 => "an Ed25519 key",
    }
}

/// The EC key an ECDSA algorithm needs, curve included, as an error message names it.
fn curve_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES384 => "an EC key on P-384",
        Algorithm::ES512 => "an EC key on P-521",
        _ => "an EC key on P-256",
    }
}

/// ring's refusal of an RSA private key, with a too-small key told apart.
fn rsa_rejected(alg: Algorithm, e: ring::error::KeyRejected) -> KeyError {
    // ring names its reasons only through this text; an unknown one still reads sensibly below.
    if e.to_string() == "TooSmall" {
        KeyError::RsaTooSmall("under 2048 bits".into())
    } else {
        mismatch(alg, "an RSA key", ring_reason(e))
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
    let key = pkcs1::RsaPublicKey::from_der(pkcs1_der)
        .map_err(|e| mismatch(alg, "an RSA key", format!("RSAPublicKey: {e}")))?;
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
