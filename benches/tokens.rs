//! What issue and verify cost per algorithm, next to the bare ring call on the same key.
//!
//! For every algorithm the service supports, the group `<ALG>` holds four in-process benchmarks:
//! `issue` and `verify` call `token::issue` and `token::verify` on a profile with an issuer;
//! `ring_sign` and `ring_verify` call ring alone, with a key parsed from the same bytes, over the
//! token's own signing input. The gap within each pair is what the service adds: JSON, base64
//! and the checks.
//!
//! ES512 has no ring call (ring lacks P-521), so its `ring_sign` and `ring_verify` are the bare
//! RustCrypto `p521` calls the service makes.
//!
//! Run: `cargo bench --bench tokens` (one group: `cargo bench --bench tokens -- ES256/`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RsaEncoding, RsaKeyPair,
    UnparsedPublicKey, VerificationAlgorithm,
};
use token_authority::core::keys::{self, Algorithm, HmacSecret, Key, KeyId};
use token_authority::core::profile::{Profile, ProfileName, ProfileSpec};
use token_authority::core::random::Random;
use token_authority::core::token::{self, IssueRequest};

const RSA_2048: &[u8] = include_bytes!("../tests/fixtures/rsa-2048.pem");
const EC_P256: &[u8] = include_bytes!("../tests/fixtures/ec-p256.pem");
const EC_P384: &[u8] = include_bytes!("../tests/fixtures/ec-p384.pem");
const ED25519: &[u8] = include_bytes!("../tests/fixtures/ed25519.pem");

/// The key material and ring algorithms behind one JWS algorithm; `keys.rs` keeps its own copy
/// of this table private, so the benchmark states it again.
enum Material {
    Hmac(hmac::Algorithm, usize),
    Rsa(&'static dyn RsaEncoding, &'static dyn VerificationAlgorithm),
    Ecdsa(
        &'static [u8],
        &'static EcdsaSigningAlgorithm,
        &'static dyn VerificationAlgorithm,
    ),
    Ed25519,
    P521,
}

fn material(alg: Algorithm) -> Material {
    use Algorithm::*;
    use signature::*;
    match alg {
        HS256 => Material::Hmac(hmac::HMAC_SHA256, 32),
        HS384 => Material::Hmac(hmac::HMAC_SHA384, 48),
        HS512 => Material::Hmac(hmac::HMAC_SHA512, 64),
        RS256 => Material::Rsa(&RSA_PKCS1_SHA256, &RSA_PKCS1_2048_8192_SHA256),
        RS384 => Material::Rsa(&RSA_PKCS1_SHA384, &RSA_PKCS1_2048_8192_SHA384),
        RS512 => Material::Rsa(&RSA_PKCS1_SHA512, &RSA_PKCS1_2048_8192_SHA512),
        PS256 => Material::Rsa(&RSA_PSS_SHA256, &RSA_PSS_2048_8192_SHA256),
        PS384 => Material::Rsa(&RSA_PSS_SHA384, &RSA_PSS_2048_8192_SHA384),
        PS512 => Material::Rsa(&RSA_PSS_SHA512, &RSA_PSS_2048_8192_SHA512),
        ES256 => Material::Ecdsa(
            EC_P256,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ECDSA_P256_SHA256_FIXED,
        ),
        ES384 => Material::Ecdsa(
            EC_P384,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &ECDSA_P384_SHA384_FIXED,
        ),
        ES512 => Material::P521,
        EdDSA => Material::Ed25519,
    }
}

/// A bare ring signing key.
enum RawSigner {
    Hmac(hmac::Key),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    P521(p521::ecdsa::SigningKey),
}

/// A bare ring verifying key.
enum RawVerifier {
    Hmac(hmac::Key),
    Public(UnparsedPublicKey<Vec<u8>>),
    P521(p521::ecdsa::VerifyingKey),
}

impl RawSigner {
    fn bench(&self, b: &mut Bencher, message: &[u8], rng: &SystemRandom) {
        match self {
            RawSigner::Hmac(key) => b.iter(|| hmac::sign(key, black_box(message))),
            RawSigner::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                b.iter(|| pair.sign(*encoding, rng, black_box(message), &mut sig));
            }
            RawSigner::Ecdsa(pair) => b.iter(|| pair.sign(rng, black_box(message))),
            RawSigner::Ed25519(pair) => b.iter(|| pair.sign(black_box(message))),
            RawSigner::P521(key) => {
                use p521::ecdsa::signature::hazmat::PrehashSigner as _;
                b.iter(|| -> p521::ecdsa::Signature {
                    let digest = ring::digest::digest(&ring::digest::SHA512, black_box(message));
                    key.sign_prehash(digest.as_ref()).expect("P-521 signs")
                })
            }
        }
    }
}

impl RawVerifier {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            RawVerifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            RawVerifier::Public(public) => public.verify(message, signature).is_ok(),
            RawVerifier::P521(key) => {
                use p521::ecdsa::signature::Verifier as _;
                p521::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|signature| key.verify(message, &signature).is_ok())
            }
        }
    }
}

/// The service's key for `alg` and the bare ring keys, all made from the same bytes.
fn load(alg: Algorithm, rng: &SystemRandom) -> (Key, RawSigner, RawVerifier) {
    let id = KeyId::parse("k").expect("\"k\" is a valid key id");
    let (pem_text, signer, public, verification) = match material(alg) {
        Material::Hmac(hmac_alg, len) => {
            let mut secret = vec![0; len];
            rng.fill(&mut secret).expect("the system RNG works");
            let raw = hmac::Key::new(hmac_alg, &secret);
            let secret = HmacSecret::new(alg, secret).expect("the secret is long enough");
            let key = Key::from_hmac_secret(id, secret, alg).expect("an HMAC key");
            return (key, RawSigner::Hmac(raw.clone()), RawVerifier::Hmac(raw));
        }
        Material::Rsa(encoding, verification) => {
            let pair = RsaKeyPair::from_pkcs8(&pkcs8(RSA_2048)).expect("an RSA key");
            let public = pair.public().as_ref().to_vec();
            (
                RSA_2048,
                RawSigner::Rsa(pair, encoding),
                public,
                verification,
            )
        }
        Material::Ecdsa(pem_text, signing, verification) => {
            let pair = EcdsaKeyPair::from_pkcs8(signing, &pkcs8(pem_text), rng).expect("an EC key");
            let public = pair.public_key().as_ref().to_vec();
            (pem_text, RawSigner::Ecdsa(pair), public, verification)
        }
        Material::P521 => {
            use p521::pkcs8::DecodePrivateKey as _;
            let pem_text = keys::generate(alg, rng).expect("a P-521 key");
            let secret = p521::SecretKey::from_pkcs8_der(&pkcs8(pem_text.as_bytes()))
                .expect("the generated key parses");
            let signing = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes())
                .expect("the scalar is in range");
            let verifying = p521::ecdsa::VerifyingKey::from(&signing);
            let key = Key::from_private_pem(id, alg, pem_text.as_bytes()).expect("it loads");
            return (key, RawSigner::P521(signing), RawVerifier::P521(verifying));
        }
        Material::Ed25519 => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8(ED25519))
                .expect("an Ed25519 key");
            let public = pair.public_key().as_ref().to_vec();
            (
                ED25519,
                RawSigner::Ed25519(pair),
                public,
                &signature::ED25519 as _,
            )
        }
    };
    let key = Key::from_private_pem(id, alg, pem_text).expect("the fixture loads");
    let verifier = RawVerifier::Public(UnparsedPublicKey::new(verification, public));
    (key, signer, verifier)
}

/// The DER of the fixture's "PRIVATE KEY" (PKCS#8) block.
fn pkcs8(pem_text: &[u8]) -> Vec<u8> {
    pem::parse_many(pem_text)
        .expect("the fixture is PEM")
        .into_iter()
        .find(|block| block.tag() == "PRIVATE KEY")
        .expect("the fixture has a PRIVATE KEY block")
        .into_contents()
}

fn bench_algorithm(c: &mut Criterion, alg: Algorithm, now: SystemTime, rng: &SystemRandom) {
    let (key, signer, verifier) = load(alg, rng);
    let name = ProfileName::parse("bench").expect("a valid profile name");
    let mut spec = ProfileSpec::new(name, Some(Arc::new(key)));
    spec.issuer = Some("https://auth.example.com".into());
    let profile = Profile::new(spec).expect("the bench profile is valid");
    let request = || IssueRequest {
        subject: "alice".into(),
        ..Default::default()
    };

    let random = Random::new();
    let token = token::issue(&profile, request(), now, &random)
        .expect("the bench token issues")
        .token;
    token::verify(&profile, &token, None, now).expect("the bench token verifies");
    // Ring works on the token's own signing input and signature, so both sides hash and check
    // the same bytes.
    let (message, signature) = token.rsplit_once('.').expect("a JWS has three parts");
    let message = message.as_bytes();
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("the signature is base64url");
    assert!(
        verifier.verify(message, &signature),
        "ring refuses the {alg} token"
    );

    let mut group = c.benchmark_group(alg.name());
    group.bench_function("issue", |b| {
        b.iter(|| token::issue(&profile, request(), now, &random))
    });
    group.bench_function("ring_sign", |b| signer.bench(b, message, rng));
    group.bench_function("verify", |b| {
        b.iter(|| token::verify(&profile, black_box(&token), None, now))
    });
    group.bench_function("ring_verify", |b| {
        b.iter(|| verifier.verify(black_box(message), &signature))
    });
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let now = SystemTime::now();
    for alg in Algorithm::ALL {
        bench_algorithm(c, alg, now, &rng);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = tokens
}
criterion_main!(benches);
