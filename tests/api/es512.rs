//! ES512 (ECDSA on P-521, RFC 7518 §3.4), the one algorithm signed by RustCrypto's `p521`
//! instead of ring: issued, verified, published and checked by OpenSSL like every other.

use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use token_authority::proto::VerifyFailure;

use crate::helpers::*;

/// A server whose profile `p` signs with an ES512 key it generates into `p521.pem` of its data
/// directory; the path of that file.
async fn spawn_es512() -> (TestApp, std::path::PathBuf) {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let file = data_dir.path().join("p521.pem");
    let config = format!(
        "[server]\n\n[[keys]]\nid = \"p521\"\nalgorithm = \"ES512\"\nprivate_key_file = {file:?}\ngenerate = true\n\n[profiles.p]\nsigning_key = \"p521\"\n"
    );
    (spawn_app_in(&config, data_dir).await, file)
}

#[tokio::test]
async fn an_es512_token_verifies_and_a_tampered_one_is_refused() {
    let (app, _) = spawn_es512().await;

    let issued = app.issue("p", "alice").await;

    assert_eq!(issued.algorithm, "ES512");
    let (signed, signature) = issued.token.rsplit_once('.').unwrap();
    assert_eq!(unb64(signature).len(), 132, "r || s, 66 bytes each");
    let answer = app.verify("p", &issued.token).await;
    assert!(answer.valid, "{}", answer.detail);
    assert_eq!(answer.subject, "alice");
    let mut sig = unb64(signature);
    sig[100] ^= 1;
    let tampered = app.verify("p", &format!("{signed}.{}", b64(&sig))).await;
    assert_eq!(tampered.failure(), VerifyFailure::BadSignature);
}

#[tokio::test]
async fn the_jwks_publishes_an_es512_key_as_p521_with_66_byte_coordinates() {
    let (app, _) = spawn_es512().await;

    let body = reqwest::get(format!("{}/.well-known/jwks.json", app.http_base))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let jwks: Value = serde_json::from_slice(&body).unwrap();

    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "p521")
        .expect("the ES512 key is published");
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-521");
    assert_eq!(key["alg"], "ES512");
    assert_eq!(unb64(key["x"].as_str().unwrap()).len(), 66);
    assert_eq!(unb64(key["y"].as_str().unwrap()).len(), 66);
}

#[tokio::test]
async fn openssl_verifies_an_es512_token_with_the_public_key_it_reads_from_our_file() {
    if !crate::key_files::openssl_available() {
        return;
    }
    let (app, file) = spawn_es512().await;
    let issued = app.issue("p", "alice").await;
    let (signed, signature) = issued.token.rsplit_once('.').unwrap();
    // OpenSSL wants the signature as DER; p521 only re-encodes r and s, it checks nothing here.
    let der = p521::ecdsa::Signature::from_slice(&unb64(signature))
        .unwrap()
        .to_der();
    let dir = file.parent().unwrap();
    std::fs::write(dir.join("signed"), signed).unwrap();
    std::fs::write(dir.join("sig.der"), der.as_bytes()).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = run(&["pkey", "-in", "p521.pem", "-pubout", "-out", "pub.pem"]);
    assert!(ok, "{text}");

    let (ok, text) = run(&[
        "dgst",
        "-sha512",
        "-verify",
        "pub.pem",
        "-signature",
        "sig.der",
        "signed",
    ]);

    assert!(ok && text.contains("Verified OK"), "{text}");
    std::fs::write(dir.join("signed"), format!("{signed}x")).unwrap();
    let (ok, _) = run(&[
        "dgst",
        "-sha512",
        "-verify",
        "pub.pem",
        "-signature",
        "sig.der",
        "signed",
    ]);
    assert!(!ok, "OpenSSL accepted a signature over other bytes");
}
