//! What jsonwebtoken 12 (RustCrypto backend) pays for taking keys as bytes: its provider
//! factories build the curve key from the `EncodingKey`/`DecodingKey` bytes on every
//! `encode`/`decode`, and there is no way to hand it a key parsed once.
//!
//! Per algorithm (ES256, EdDSA), four benchmarks on the same fixture key and the same claims:
//! `encode` and `decode` are whole jsonwebtoken calls with keys built once outside the loop;
//! `sign_key_parse` and `verify_key_parse` are only the parse each call repeats inside
//! (`SigningKey::from_pkcs8_der`, `VerifyingKey::from_sec1_bytes` / `from_bytes`). The share of
//! the parse in each call is what a pre-parsed key would save; ARCHITECTURE.md quotes it.
//! `token_authority_verify` is our own `token::verify` on the same key, for scale.
//!
//! Run: `cargo bench --bench relying_party`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;
use token_authority::core::keys::{Key, KeyId};
use token_authority::core::profile::{Profile, ProfileName, ProfileSpec};
use token_authority::core::token;

const EC_P256: &str = include_str!("../tests/fixtures/ec-p256.pem");
const ED25519: &str = include_str!("../tests/fixtures/ed25519.pem");

fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        json!({"sub": "alice", "iat": now, "exp": now + 3600, "jti": "Ett9GLkBJUvvKC_FmwX1Qw"});
    for (name, alg, pem_text) in [
        ("ES256", Algorithm::ES256, EC_P256),
        ("EdDSA", Algorithm::EdDSA, ED25519),
    ] {
        let pkcs8 = der(pem_text);
        let ours = Arc::new(
            Key::from_private_pem(
                KeyId::parse("k").unwrap(),
                name.parse().unwrap(),
                pem_text.as_bytes(),
            )
            .unwrap(),
        );
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(serde_json::Value::Object(
            ours.public_jwk().unwrap().to_json(),
        ))
        .unwrap();
        let encoding = if alg == Algorithm::ES256 {
            EncodingKey::from_ec_der(&pkcs8)
        } else {
            EncodingKey::from_ed_der(&pkcs8)
        };
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let mut header = Header::new(alg);
        header.kid = Some("k".into());
        let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        let point = match decoding.kind() {
            jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes) => bytes.clone(),
            _ => unreachable!("EC and OKP keys from a JWK are kept as bytes"),
        };
        let mut group = c.benchmark_group(name);
        group.bench_function("encode", |b| {
            b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap())
        });
        group.bench_function("decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &decoding, &validation)
                    .unwrap()
            })
        });
        if alg == Algorithm::ES256 {
            use p256::pkcs8::DecodePrivateKey as _;
            group.bench_function("sign_key_parse", |b| {
                b.iter(|| p256::ecdsa::SigningKey::from_pkcs8_der(black_box(&pkcs8)).unwrap())
            });
            group.bench_function("verify_key_parse", |b| {
                b.iter(|| p256::ecdsa::VerifyingKey::from_sec1_bytes(black_box(&point)).unwrap())
            });
        } else {
            use ed25519_dalek::pkcs8::DecodePrivateKey as _;
            group.bench_function("sign_key_parse", |b| {
                b.iter(|| ed25519_dalek::SigningKey::from_pkcs8_der(black_box(&pkcs8)).unwrap())
            });
            let bytes: [u8; 32] = point[..32].try_into().unwrap();
            group.bench_function("verify_key_parse", |b| {
                b.iter(|| ed25519_dalek::VerifyingKey::from_bytes(black_box(&bytes)).unwrap())
            });
        }
        let spec = ProfileSpec::new(ProfileName::parse("p").unwrap(), Some(ours.clone()));
        let profile = Profile::new(spec).unwrap();
        let at = SystemTime::now();
        token::verify(&profile, &token, None, at).expect("our verify accepts jsonwebtoken's token");
        group.bench_function("token_authority_verify", |b| {
            b.iter(|| token::verify(&profile, black_box(&token), None, at))
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = bench }
criterion_main!(benches);
