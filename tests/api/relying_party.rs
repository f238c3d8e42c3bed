//! Rust relying parties: the `jsonwebtoken` crate (12, RustCrypto backend), fed our JWKS from the
//! HTTP listener as a backend fetches it, accepts every asymmetric token we issue and an HMAC
//! token with the shared secret, and refuses tampered ones. The last tests pin down what
//! `jsonwebtoken` itself accepts, as ARCHITECTURE.md ("Rust relying parties") reports it.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};

use crate::helpers::*;

/// Our JWKS as a relying party reads it: GET /.well-known/jwks.json, parsed by `jsonwebtoken`.
async fn fetch_jwks(app: &TestApp) -> JwkSet {
    let body = reqwest::get(format!("{}/.well-known/jwks.json", app.http_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// What a relying party checks: the alg it expects, `exp` and `sub` present.
fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 0;
    validation
}

/// The same token with one byte of the payload changed, signature kept.
fn tampered(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = payload(token);
    payload.insert("sub".into(), json!("mallory"));
    parts[1] = b64(serde_json::to_string(&payload).unwrap().as_bytes());
    parts.join(".")
}

#[tokio::test]
async fn jsonwebtoken_fed_our_jwks_accepts_every_asymmetric_token_we_issue_and_refuses_tampering() {
    let app = spawn_app().await;
    let jwks = fetch_jwks(&app).await;
    let asymmetric: Vec<&str> = ALGORITHMS
        .into_iter()
        .filter(|a| !a.starts_with("HS"))
        .collect();
    assert_eq!(asymmetric.len(), 9);
    for alg in asymmetric {
        let issued = app.issue(&alg.to_lowercase(), "alice").await;
        let header = decode_header(&issued.token).unwrap();
        let kid = header.kid.clone().unwrap();
        let jwk = jwks
            .find(&kid)
            .unwrap_or_else(|| panic!("{alg}: kid {kid} not in our JWKS"));
        let key = DecodingKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{alg}: {e}"));
        let expected: Algorithm = alg.parse().unwrap();
        assert_eq!(header.alg, expected);
        let data = decode::<Value>(&issued.token, &key, &validation(expected))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(data.claims["sub"], "alice", "{alg}");
        assert_eq!(data.claims["jti"], issued.token_id.as_str(), "{alg}");
        let refused = decode::<Value>(&tampered(&issued.token), &key, &validation(expected));
        assert_eq!(
            refused.unwrap_err().kind(),
            &jsonwebtoken::errors::ErrorKind::InvalidSignature,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn jsonwebtoken_accepts_our_hmac_tokens_with_the_shared_secret_and_refuses_tampering() {
    let app = spawn_app().await;
    for (alg, secret) in [
        (Algorithm::HS256, HS256_SECRET),
        (Algorithm::HS384, HS384_SECRET),
        (Algorithm::HS512, HS512_SECRET),
    ] {
        let name = format!("{alg:?}").to_lowercase();
        let issued = app.issue(&name, "bob").await;
        let key = DecodingKey::from_secret(secret).unwrap();
        let data = decode::<Value>(&issued.token, &key, &validation(alg)).unwrap();
        assert_eq!(data.claims["sub"], "bob");
        assert!(decode::<Value>(&tampered(&issued.token), &key, &validation(alg)).is_err());
        // The JWKS never carries the secret, so a relying party cannot find an HMAC key there.
        assert!(fetch_jwks(&app).await.find(&issued.key_id).is_none());
    }
}

#[tokio::test]
async fn jsonwebtoken_12_reads_a_jwks_with_a_p521_key_but_cannot_verify_es512() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let file = data_dir.path().join("p521.pem");
    let app = spawn_app_in(
        &format!(
            "[[keys]]\nid = \"p521\"\nalgorithm = \"ES512\"\nprivate_key_file = {file:?}\ngenerate = true\n\n[profiles.p]\nsigning_key = \"p521\"\n"
        ),
        data_dir,
    )
    .await;
    let issued = app.issue("p", "carol").await;
    // The set still parses (the key's alg becomes UNKNOWN_ALGORITHM), so one ES512 key does
    // not break a relying party's other keys; but the token's header does not parse at all.
    let jwks = fetch_jwks(&app).await;
    assert!(jwks.find("p521").is_some());
    let err = decode_header(&issued.token).unwrap_err();
    assert!(
        err.to_string().contains("ES512") || err.to_string().contains("unknown variant"),
        "{err}"
    );
}

// ---- what jsonwebtoken 12 itself accepts (see ARCHITECTURE.md) ----------------------------

fn hs256_key() -> DecodingKey {
    DecodingKey::from_secret(HS256_SECRET).unwrap()
}

fn exp() -> u64 {
    now() + 300
}

#[test]
fn jsonwebtoken_refuses_an_unknown_crit_header_but_accepts_crit_b64() {
    let payload = format!(r#"{{"sub":"a","exp":{}}}"#, exp());
    let unknown = hs256_raw(
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        &payload,
        HS256_SECRET,
    );
    assert!(decode::<Value>(&unknown, &hs256_key(), &validation(Algorithm::HS256)).is_err());
    // RFC 7797: b64 true is the default encoding, so listing it in crit changes nothing; a
    // verifier that does not implement RFC 7797 should still refuse it (RFC 7515 §4.1.11).
    let b64 = hs256_raw(
        r#"{"alg":"HS256","crit":["b64"],"b64":true}"#,
        &payload,
        HS256_SECRET,
    );
    assert!(decode::<Value>(&b64, &hs256_key(), &validation(Algorithm::HS256)).is_ok());
    let b64_false = hs256_raw(
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        &payload,
        HS256_SECRET,
    );
    assert!(decode::<Value>(&b64_false, &hs256_key(), &validation(Algorithm::HS256)).is_err());
}

#[test]
fn jsonwebtoken_takes_the_last_of_duplicate_custom_claims_but_refuses_duplicate_registered_ones() {
    let token = hs256_raw(
        r#"{"alg":"HS256"}"#,
        &format!(
            r#"{{"sub":"a","role":"user","role":"admin","exp":{}}}"#,
            exp()
        ),
        HS256_SECRET,
    );
    let data = decode::<Value>(&token, &hs256_key(), &validation(Algorithm::HS256)).unwrap();
    assert_eq!(data.claims["role"], "admin");
    // Its own claim checks deserialize into a struct, where serde refuses a repeated field.
    // Both values of each repeated claim would pass, so only the repetition can be refused.
    for claims in [
        format!(r#"{{"sub":"a","sub":"b","exp":{}}}"#, exp()),
        format!(r#"{{"sub":"a","exp":{},"exp":{}}}"#, exp(), exp() + 1),
    ] {
        let token = hs256_raw(r#"{"alg":"HS256"}"#, &claims, HS256_SECRET);
        let err = decode::<Value>(&token, &hs256_key(), &validation(Algorithm::HS256))
            .expect_err(&claims);
        assert!(err.to_string().contains("duplicate"), "{claims}: {err}");
    }
}

#[test]
fn jsonwebtoken_accepts_a_missing_aud_when_an_audience_is_expected_unless_aud_is_required() {
    let token = hs256_raw(
        r#"{"alg":"HS256"}"#,
        &format!(r#"{{"sub":"a","exp":{}}}"#, exp()),
        HS256_SECRET,
    );
    let mut expecting = validation(Algorithm::HS256);
    expecting.set_audience(&["billing"]);
    assert!(decode::<Value>(&token, &hs256_key(), &expecting).is_ok());
    expecting.set_required_spec_claims(&["exp", "sub", "aud"]);
    assert!(decode::<Value>(&token, &hs256_key(), &expecting).is_err());
}

// ---- examples/relying_party.rs, the backend a team copies ----------------------------------

#[path = "../../examples/relying_party.rs"]
#[allow(dead_code)]
mod example;

#[tokio::test]
async fn the_example_backend_verifies_our_tokens_and_refetches_the_jwks_only_as_allowed() {
    use std::time::{Duration, Instant};
    let app = spawn_app().await;
    let url = format!("{}/.well-known/jwks.json", app.http_base);
    let verifier = example::Verifier {
        jwks: example::JwksCache::new(url.clone()),
        issuer: "https://auth.test".into(),
        audience: None,
    };
    let issued = app.issue("default", "alice").await;
    let claims = verifier.verify(&issued.token).await.unwrap();
    assert_eq!(claims["sub"], "alice");
    verifier.verify(&issued.token).await.unwrap();
    assert_eq!(
        verifier.jwks.fetches(),
        1,
        "the second token uses the cache"
    );
    assert!(verifier.verify(&tampered(&issued.token)).await.is_err());

    // The cache on its own clock: an unknown kid refetches at most once per floor, and the
    // set is fetched again when the served max-age (300 s here) runs out.
    let cache = example::JwksCache::new(url);
    let t0 = Instant::now();
    let kid = issued.key_id.as_str();
    cache.key(kid, t0).await.unwrap();
    let forged = cache.key("forged", t0 + Duration::from_secs(1)).await;
    assert!(forged.is_err());
    assert_eq!(
        cache.fetches(),
        1,
        "a forged kid inside the floor fetches nothing"
    );
    assert!(
        cache
            .key("forged", t0 + Duration::from_secs(31))
            .await
            .is_err()
    );
    assert_eq!(cache.fetches(), 2, "after the floor, one refetch");
    cache.key(kid, t0 + Duration::from_secs(32)).await.unwrap();
    assert_eq!(cache.fetches(), 2);
    cache.key(kid, t0 + Duration::from_secs(332)).await.unwrap();
    assert_eq!(cache.fetches(), 3, "max-age=300 ran out");
}

#[tokio::test]
async fn the_example_backend_requires_aud_when_it_has_an_audience() {
    let app = spawn_app().await;
    let verifier = example::Verifier {
        jwks: example::JwksCache::new(format!("{}/.well-known/jwks.json", app.http_base)),
        issuer: "https://auth.test".into(),
        audience: Some("billing".into()),
    };
    let for_billing = app
        .issue_with_claims("strict", "alice", json!({"email": "a@example.com"}))
        .await;
    assert!(verifier.verify(&for_billing.token).await.is_ok());
    // Same issuer and key, but no aud: plain jsonwebtoken would accept it.
    let no_aud = app.issue("default", "alice").await;
    let err = verifier
        .verify(&no_aud.token)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("aud"), "{err}");
}
