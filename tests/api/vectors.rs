//! Public test vectors nobody here wrote, run through the real server: the RFC 7520 §4 JWS
//! examples (JOSE Cookbook), whose key id is an e-mail address. The vectors live in
//! `../shared/vectors` beside the checkout; without them these tests say so and pass.

use std::path::PathBuf;

use serde_json::Value;
use token_authority::proto::VerifyFailure;

use crate::helpers::*;

/// The shared vectors folder, or `None` (after saying so) when this checkout has none beside it.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no test vectors at {} (see the README's test section)",
            dir.display()
        );
        None
    }
}

/// One RFC 7520 JWS example: its key JWK, its algorithm and its compact token.
struct Example {
    key: Value,
    alg: String,
    compact: String,
}

fn cookbook(dir: &std::path::Path, name: &str) -> Example {
    let path = dir.join("rfc/ietf-jose-cookbook/jws").join(name);
    let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    Example {
        key: json["input"]["key"].clone(),
        alg: json["input"]["alg"].as_str().unwrap().to_owned(),
        compact: json["output"]["compact"].as_str().unwrap().to_owned(),
    }
}

/// The RSA public key of a JWK as a SPKI PEM file in `dir`, converted by the `rsa` crate.
fn rsa_public_pem(jwk: &Value, dir: &std::path::Path) -> PathBuf {
    use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
    let int = |name: &str| rsa::BigUint::from_bytes_be(&unb64(jwk[name].as_str().unwrap()));
    let key = rsa::RsaPublicKey::new(int("n"), int("e")).unwrap();
    let path = dir.join("cookbook-rsa.pub.pem");
    std::fs::write(&path, key.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
    path
}

/// The P-521 public key of a JWK as a SPKI PEM file in `dir`, converted by the `p521` crate.
fn p521_public_pem(jwk: &Value, dir: &std::path::Path) -> PathBuf {
    use p521::pkcs8::{EncodePublicKey as _, LineEnding};
    let mut point = vec![0x04];
    point.extend(unb64(jwk["x"].as_str().unwrap()));
    point.extend(unb64(jwk["y"].as_str().unwrap()));
    let key = p521::PublicKey::from_sec1_bytes(&point).unwrap();
    let path = dir.join("p521.pub.pem");
    std::fs::write(&path, key.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
    path
}

/// A server with one verify-only profile `cookbook` holding `key_toml` as key `kid`.
async fn app_with_key(kid: &str, alg: &str, key_toml: &str) -> TestApp {
    spawn_app_with(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[keys]]\nid = {kid:?}\nalgorithm = {alg:?}\n{key_toml}\n\n[profiles.cookbook]\nverify_keys = [{kid:?}]\n"
    ))
    .await
}

/// The examples sign a text, not a claim set: a signature that holds shows as a refusal of the
/// payload's JSON (phase three), one that does not as a bad signature (phase two).
async fn assert_signature_holds_and_tampering_is_caught(app: &TestApp, example: &Example) {
    let answer = app.verify("cookbook", &example.compact).await;
    assert!(!answer.valid);
    assert_eq!(
        answer.failure(),
        VerifyFailure::Malformed,
        "{}: {}",
        example.alg,
        answer.detail
    );
    assert!(answer.detail.contains("payload"), "{}", answer.detail);

    let (signed, signature) = example.compact.rsplit_once('.').unwrap();
    let mut sig = unb64(signature);
    sig[0] ^= 1;
    let tampered = format!("{signed}.{}", b64(&sig));
    let answer = app.verify("cookbook", &tampered).await;
    assert_eq!(
        answer.failure(),
        VerifyFailure::BadSignature,
        "{}",
        answer.detail
    );
}

#[tokio::test]
async fn rfc7520_rsa_examples_verify_under_the_e_mail_key_id_bilbo_baggins() {
    let Some(dir) = vectors_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for file in ["4_1.rsa_v15_signature.json", "4_2.rsa-pss_signature.json"] {
        let example = cookbook(&dir, file);
        let kid = example.key["kid"].as_str().unwrap();
        assert_eq!(kid, "bilbo.baggins@hobbiton.example");
        let pem = rsa_public_pem(&example.key, tmp.path());
        let app = app_with_key(kid, &example.alg, &format!("public_key_file = {pem:?}")).await;

        assert_signature_holds_and_tampering_is_caught(&app, &example).await;
    }
}

#[tokio::test]
async fn es512_examples_of_rfc7520_and_rfc7515_verify_with_their_p521_keys() {
    let Some(dir) = vectors_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let rfc7515: Value =
        serde_json::from_slice(&std::fs::read(dir.join("rfc/rfc7515_appendix_a.json")).unwrap())
            .unwrap();
    let a4 = &rfc7515["examples"]["A.4"];
    let examples = [
        (
            "bilbo.baggins@hobbiton.example",
            cookbook(&dir, "4_3.ecdsa_signature.json"),
        ),
        (
            "rfc7515-a4",
            Example {
                key: a4["jwk"].clone(),
                alg: "ES512".into(),
                compact: a4["compact"].as_str().unwrap().to_owned(),
            },
        ),
    ];
    for (kid, example) in examples {
        assert_eq!(example.alg, "ES512");
        let pem = p521_public_pem(&example.key, tmp.path());
        let app = app_with_key(kid, "ES512", &format!("public_key_file = {pem:?}")).await;

        assert_signature_holds_and_tampering_is_caught(&app, &example).await;
    }
}

#[tokio::test]
async fn rfc7520_hmac_example_verifies_under_its_uuid_key_id() {
    let Some(dir) = vectors_dir() else { return };
    let example = cookbook(&dir, "4_4.hmac-sha2_integrity_protection.json");
    let kid = example.key["kid"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("cookbook.secret");
    std::fs::write(&secret, example.key["k"].as_str().unwrap()).unwrap();
    let app = app_with_key(
        kid,
        &example.alg,
        &format!("secret_file = {secret:?}\nsecret_encoding = \"base64\""),
    )
    .await;

    assert_signature_holds_and_tampering_is_caught(&app, &example).await;
}

#[tokio::test]
async fn a_key_id_with_quotes_is_escaped_in_the_log_and_returned_as_written() {
    let kid = "ops\" outcome=\"forged";
    let app = app_with_key(
        kid,
        "HS256",
        "secret_env = \"TOKEN_AUTHORITY_TEST_SECOND_SECRET\"",
    )
    .await;
    let token = hs256_raw(
        &format!(
            r#"{{"alg":"HS256","kid":{}}}"#,
            serde_json::to_string(kid).unwrap()
        ),
        &format!(r#"{{"sub":"quoted-kid-subject","exp":{}}}"#, now() + 60),
        SECOND_SECRET.as_bytes(),
    );

    let answer = app.verify("cookbook", &token).await;

    assert!(answer.valid, "{:?} {}", answer.failure(), answer.detail);
    assert_eq!(answer.key_id, kid);
    let logs = captured_logs();
    assert!(logs.contains(r#"kid="ops\" outcome=\"forged""#), "{logs}");
    assert!(
        !logs.contains(r#"outcome="forged""#),
        "an unescaped kid reached the log"
    );
}
