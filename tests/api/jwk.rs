//! Keys given as JWKs: a `[[keys]]` entry with `jwk_file`/`jwk_env` (public or private), a
//! profile taking its verify keys from a JWK Set file (`jwks_file`), every refusal naming the
//! file and the member, reload picking up a changed set, and the public JWK vectors (Wycheproof
//! `json_web_key_test.json`, RFC 7520 §3 keys) run through the parser and the server.

use serde_json::{Value, json};
use token_authority::core::keys::{JwkForm, JwkSet};
use token_authority::proto::{ReloadRequest, VerifyFailure};
use token_authority::state::config::Config;

use crate::helpers::*;
use crate::vectors::vectors_dir;

/// The public JWK of a fixture key, as the service itself publishes it, under `kid`.
fn public_jwk(alg: &str, fixture_name: &str, kid: &str) -> Value {
    use token_authority::core::keys::{Key, KeyId};
    let key = Key::from_private_pem(
        KeyId::parse(kid).unwrap(),
        alg.parse().unwrap(),
        fixture_text(fixture_name).as_bytes(),
    )
    .unwrap();
    Value::Object(key.public_jwk().unwrap().to_json())
}

/// The private JWK of a fixture key: its public JWK plus the private members, read from the
/// PEM by the `rsa` and `sec1` crates rather than by the parser under test.
fn private_jwk(alg: &str, fixture_name: &str, kid: &str) -> Value {
    let pem = fixture_text(fixture_name);
    let mut jwk = public_jwk(alg, fixture_name, kid);
    let obj = jwk.as_object_mut().unwrap();
    if alg.starts_with("RS") || alg.starts_with("PS") {
        use rsa::pkcs8::DecodePrivateKey as _;
        use rsa::traits::PrivateKeyParts as _;
        let mut key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        key.precompute().unwrap();
        let int = |n: &rsa::BigUint| json!(b64(&n.to_bytes_be()));
        let primes = key.primes().to_vec();
        obj.insert("d".into(), int(key.d()));
        obj.insert("p".into(), int(&primes[0]));
        obj.insert("q".into(), int(&primes[1]));
        obj.insert("dp".into(), int(key.dp().unwrap()));
        obj.insert("dq".into(), int(key.dq().unwrap()));
        obj.insert("qi".into(), int(&key.crt_coefficient().unwrap()));
    } else {
        let der = pem::parse(&pem).unwrap();
        let info = p521::pkcs8::PrivateKeyInfo::try_from(der.contents()).unwrap();
        let d = if alg == "EdDSA" {
            info.private_key[2..].to_vec()
        } else {
            sec1::EcPrivateKey::try_from(info.private_key)
                .unwrap()
                .private_key
                .to_vec()
        };
        obj.insert("d".into(), json!(b64(&d)));
    }
    jwk
}

fn write(app_dir: &std::path::Path, name: &str, json: &Value) -> std::path::PathBuf {
    let path = app_dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).unwrap();
    path
}

/// A token from an outside signer (jwt-simple, the fixture key of `alg`) naming `kid`.
fn outside_token(app: &TestApp, alg: &str, kid: &str) -> String {
    let mut claims = claims_for("alice", json!({}), 300);
    let iat = jwt_simple::prelude::Duration::from_secs(app.unix_now() - 1);
    claims.issued_at = Some(iat);
    claims.invalid_before = Some(iat);
    jose_sign(alg, claims, Some(kid))
}

#[tokio::test]
async fn issue_signs_with_private_jwk_keys_whose_kid_and_alg_come_from_the_jwk() {
    let dir = tempfile::tempdir().unwrap();
    let es = write(
        dir.path(),
        "es.jwk",
        &private_jwk("ES256", "ec-p256.pem", "es-jwk"),
    );
    let ps = write(
        dir.path(),
        "ps.jwk",
        &with(
            private_jwk("PS256", "rsa-2048.pem", "ps-jwk"),
            "alg",
            "PS384",
        ),
    );
    let ed = write(
        dir.path(),
        "ed.jwk",
        &without_alg(private_jwk("EdDSA", "ed25519.pem", "ed-jwk")),
    );
    let app = spawn_app_with(&format!(
        r#"
[[keys]]
jwk_file = {es:?}

[[keys]]
id = "ps-jwk"
jwk_file = {ps:?}

[[keys]]
algorithm = "EdDSA"
jwk_file = {ed:?}

[[keys]]
jwk_env = "TOKEN_AUTHORITY_TEST_HS256_JWK"

[profiles.es]
signing_key = "es-jwk"
[profiles.ps]
signing_key = "ps-jwk"
[profiles.ed]
signing_key = "ed-jwk"
[profiles.hs]
signing_key = "env-jwk"
"#
    ))
    .await;
    for (profile, kid, alg) in [
        ("es", "es-jwk", "ES256"),
        ("ps", "ps-jwk", "PS384"),
        ("ed", "ed-jwk", "EdDSA"),
        ("hs", "env-jwk", "HS256"),
    ] {
        let issued = app.issue(profile, "alice").await;
        assert_eq!(issued.key_id, kid);
        assert_eq!(header(&issued.token)["alg"], alg);
        // An outside implementation verifies with the fixture's PEM public key.
        let claims = jose_verify(alg, &issued.token).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("alice"));
        assert!(app.verify(profile, &issued.token).await.valid);
    }
}

fn without_alg(mut jwk: Value) -> Value {
    jwk.as_object_mut().unwrap().remove("alg");
    jwk
}

fn with(mut jwk: Value, member: &str, value: &str) -> Value {
    jwk[member] = json!(value);
    jwk
}

#[tokio::test]
async fn verify_accepts_tokens_from_outside_signers_whose_keys_are_public_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let rs = write(
        dir.path(),
        "rs.pub.jwk",
        &public_jwk("RS256", "rsa-2048.pem", "partner-rs"),
    );
    let es = write(
        dir.path(),
        "es.pub.jwk",
        &public_jwk("ES384", "ec-p384.pem", "partner-es"),
    );
    let app = spawn_app_with(&format!(
        r#"
[[keys]]
id = "partner-rs"
algorithm = "RS256"
jwk_file = {rs:?}

[[keys]]
jwk_file = {es:?}

[profiles.partner]
verify_keys = ["partner-rs", "partner-es"]
"#
    ))
    .await;
    for (alg, kid) in [("RS256", "partner-rs"), ("ES384", "partner-es")] {
        let answer = app.verify("partner", &outside_token(&app, alg, kid)).await;
        assert!(answer.valid, "{alg}: {:?}", answer.failure());
    }
    // The RSA key is bound to RS256: the same key used with PS256 is refused.
    let answer = app
        .verify("partner", &outside_token(&app, "PS256", "partner-rs"))
        .await;
    assert!(!answer.valid);
    assert_eq!(answer.failure(), VerifyFailure::AlgorithmNotAllowed);
}

#[tokio::test]
async fn a_profile_verifies_with_the_usable_keys_of_a_jwks_file_and_skips_the_others() {
    let dir = tempfile::tempdir().unwrap();
    // As a Kubernetes cluster's /openid/v1/jwks or a partner's published set looks, with an
    // encryption key and a key type the service does not use beside the signing keys.
    let set = json!({"keys": [
        public_jwk("RS256", "rsa-2048.pem", "cluster-rs"),
        with(public_jwk("ES256", "ec-p256.pem", "enc-key"), "use", "enc"),
        {"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(&[9; 32])},
        public_jwk("EdDSA", "ed25519.pem", "cluster-ed"),
    ]});
    let file = write(dir.path(), "cluster.jwks", &set);
    let app = spawn_app_with(&format!("[profiles.cluster]\njwks_file = {file:?}\n")).await;
    for (alg, kid) in [("RS256", "cluster-rs"), ("EdDSA", "cluster-ed")] {
        let answer = app.verify("cluster", &outside_token(&app, alg, kid)).await;
        assert!(answer.valid, "{alg}: {:?}", answer.failure());
    }
    let skipped = app
        .verify("cluster", &outside_token(&app, "ES256", "enc-key"))
        .await;
    assert_eq!(skipped.failure(), VerifyFailure::UnknownKey);
    let logs = captured_logs();
    assert!(logs.contains("jwks_file entry skipped"), "{logs}");
    for skipped in [r#"keys[1] (kid "enc-key")"#, r#"keys[2] (kid "x")"#] {
        assert!(logs.contains(skipped), "{skipped} not in {logs}");
    }
}

#[tokio::test]
async fn a_profile_with_a_signing_key_and_a_jwks_file_verifies_both() {
    let dir = tempfile::tempdir().unwrap();
    let set = json!({"keys": [public_jwk("ES384", "ec-p384.pem", "partner")]});
    let file = write(dir.path(), "partner.jwks", &set);
    let app = spawn_app_with(&format!(
        "[[keys]]\nid = \"own\"\nalgorithm = \"HS256\"\nsecret_file = \"hs256.secret\"\n\n[profiles.mixed]\nsigning_key = \"own\"\njwks_file = {file:?}\n"
    ))
    .await;
    let own = app.issue("mixed", "bob").await;
    assert!(app.verify("mixed", &own.token).await.valid);
    let partner = outside_token(&app, "ES384", "partner");
    assert!(app.verify("mixed", &partner).await.valid);
}

#[test]
fn config_check_names_the_jwks_file_each_verify_key_came_from() {
    use crate::cli::{config_check, stderr, stdout};
    let dir = tempfile::tempdir().unwrap();
    let set = json!({"keys": [
        public_jwk("ES384", "ec-p384.pem", "partner-1"),
        public_jwk("ES256", "ec-p256.pem", "partner-2"),
    ]});
    let file = write(dir.path(), "partner.jwks", &set);
    std::fs::write(dir.path().join("own.secret"), "s".repeat(32)).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"own\"\nalgorithm = \"HS256\"\nsecret_file = \"own.secret\"\n\n[profiles.mixed]\nsigning_key = \"own\"\njwks_file = \"partner.jwks\"\n\n[profiles.outside]\njwks_file = {file:?}\n"
        ),
    )
    .unwrap();
    let out = config_check(&config, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout(&out);
    let verify_lines: Vec<&str> = report
        .lines()
        .filter(|l| l.trim_start().starts_with("verify keys:"))
        .collect();
    // A relative jwks_file is shown resolved against the data directory, as serve reads it.
    let shown = file.display();
    assert_eq!(
        verify_lines,
        [
            format!("    verify keys:   own; from jwks_file {shown}: partner-1, partner-2"),
            format!("    verify keys:   from jwks_file {shown}: partner-1, partner-2"),
        ],
        "{report}"
    );
}

#[tokio::test]
async fn reload_picks_up_a_changed_jwks_file() {
    let first = json!({"keys": [public_jwk("ES256", "ec-p256.pem", "old")]});
    let own = "[server]\nadmin = true\n\n[[keys]]\nid = \"own\"\nalgorithm = \"HS256\"\nsecret_file = \"hs256.secret\"\n\n[profiles.own]\nsigning_key = \"own\"\n";
    let app = spawn_app_from_file(own).await;
    write(app.data_dir.path(), "partner.jwks", &first);
    // A relative jwks_file resolves against the data directory, as key files do.
    std::fs::write(
        app.data_dir.path().join("config.toml"),
        format!("{own}\n[profiles.partner]\njwks_file = \"partner.jwks\"\n"),
    )
    .unwrap();
    let mut admin = app.admin.clone();
    admin.reload(ReloadRequest {}).await.unwrap();
    let new_token = outside_token(&app, "EdDSA", "new");
    assert_eq!(
        app.verify("partner", &new_token).await.failure(),
        VerifyFailure::UnknownKey
    );
    assert!(
        app.verify("partner", &outside_token(&app, "ES256", "old"))
            .await
            .valid
    );
    let rotated = json!({"keys": [public_jwk("EdDSA", "ed25519.pem", "new")]});
    write(app.data_dir.path(), "partner.jwks", &rotated);
    admin.reload(ReloadRequest {}).await.unwrap();
    assert!(app.verify("partner", &new_token).await.valid);
    assert_eq!(
        app.verify("partner", &outside_token(&app, "ES256", "old"))
            .await
            .failure(),
        VerifyFailure::UnknownKey
    );
    // A broken set is refused by name and the last good one keeps serving.
    std::fs::write(app.data_dir.path().join("partner.jwks"), "{\"keys\": [").unwrap();
    let status = admin.reload(ReloadRequest {}).await.unwrap_err();
    assert!(
        status.message().contains("partner.jwks"),
        "{}",
        status.message()
    );
    assert!(app.verify("partner", &new_token).await.valid);
}

/// The start-up error for `toml`, with the JWK files in `files` written beside it.
fn start_up_error(toml: &str, files: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    test_env();
    match Config::from_toml(toml, "bad.toml", dir.path()) {
        Ok(_) => panic!("the config should be refused:\n{toml}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn every_refused_jwk_is_named_with_its_file_its_member_and_the_reason() {
    let es = private_jwk("ES256", "ec-p256.pem", "k");
    let es_pub = public_jwk("ES256", "ec-p256.pem", "k");
    let key_entry = |extra: &str| {
        format!("[[keys]]\n{extra}jwk_file = \"k.jwk\"\n\n[profiles.p]\nverify_keys = [\"k\"]\n")
    };
    let duplicate =
        es_pub
            .to_string()
            .replacen("\"kty\":\"EC\"", "\"kty\":\"EC\",\"kty\":\"RSA\"", 1);
    let cases: Vec<(String, String, Vec<&str>)> = vec![
        (
            key_entry("id = \"other\"\n"),
            es.to_string(),
            vec!["bad.toml", "key \"other\"", "k.jwk", "\"kid\"", "\"other\""],
        ),
        (
            key_entry("algorithm = \"ES384\"\n"),
            es.to_string(),
            vec!["k.jwk", "\"alg\"", "ES256", "ES384"],
        ),
        (
            key_entry(""),
            with(es_pub.clone(), "use", "enc").to_string(),
            vec!["from jwk_file k.jwk", "\"use\"", "\"enc\""],
        ),
        (
            key_entry(""),
            duplicate,
            vec!["k.jwk", "\"kty\" appears twice"],
        ),
        (
            key_entry(""),
            with(es_pub.clone(), "crv", "P-384").to_string(),
            vec!["k.jwk", "\"crv\"", "P-384 does not fit ES256"],
        ),
        (
            key_entry(""),
            json!({"kty": "oct", "kid": "k", "k": b64(&[1; 32])}).to_string(),
            vec!["k.jwk", "\"alg\" missing"],
        ),
        (
            key_entry("id = \"k\"\ngenerate = true\n"),
            es.to_string(),
            vec!["generate = true", "jwk_file"],
        ),
        (
            key_entry("secret_file = \"hs256.secret\"\n"),
            es.to_string(),
            vec!["exactly one of", "secret_file, jwk_file"],
        ),
        (
            "[[keys]]\nalgorithm = \"ES256\"\nprivate_key_file = \"k.pem\"\n\n[profiles.p]\nverify_keys = [\"k\"]\n".into(),
            String::new(),
            vec!["key without an id", "id is missing"],
        ),
    ];
    for (toml, jwk, parts) in cases {
        let message = start_up_error(&toml, &[("k.jwk", jwk)]);
        for part in parts {
            assert!(message.contains(part), "{part:?} not in: {message}");
        }
    }
    let message = start_up_error(
        "[[keys]]\njwk_env = \"TA_TEST_NO_SUCH_JWK\"\n\n[profiles.p]\nverify_keys = [\"k\"]\n",
        &[],
    );
    assert!(message.contains("jwk_env: environment variable TA_TEST_NO_SUCH_JWK is not set"));
}

#[test]
fn a_jwks_file_is_refused_by_name_when_it_holds_no_usable_key_or_private_material() {
    let private_set = json!({"keys": [private_jwk("ES256", "ec-p256.pem", "k")]});
    let message = start_up_error(
        "[profiles.p]\njwks_file = \"set.jwks\"\n",
        &[("set.jwks", private_set.to_string())],
    );
    for part in [
        "bad.toml",
        "profile \"p\"",
        "jwks_file",
        "set.jwks",
        "no usable key",
        "keys[0] (kid \"k\")",
        "\"d\" is private key material",
    ] {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
    let message = start_up_error(
        "[profiles.p]\njwks_file = \"set.jwks\"\n",
        &[("set.jwks", "{\"keys\": 1}".into())],
    );
    assert!(message.contains("set.jwks") && message.contains("\"keys\""));
    let message = start_up_error("[profiles.p]\njwks_file = \"absent.jwks\"\n", &[]);
    assert!(message.contains("absent.jwks"));
    let twice = json!({"keys": [public_jwk("ES256", "ec-p256.pem", "own")]});
    let message = start_up_error(
        "[[keys]]\nid = \"own\"\nalgorithm = \"HS256\"\nsecret_file = \"s\"\n\n[profiles.p]\nsigning_key = \"own\"\njwks_file = \"set.jwks\"\n",
        &[
            ("set.jwks", twice.to_string()),
            ("s", String::from_utf8(HS256_SECRET.to_vec()).unwrap()),
        ],
    );
    assert!(
        message.contains("kid \"own\" is already a verify key"),
        "{message}"
    );
}

/// Verifies a compact JWS against a parsed set as a relying party would: the key named by
/// `kid`, bound to the header's `alg`.
fn verifies(set: &JwkSet, jws: &str) -> bool {
    let Some((input, signature)) = jws.rsplit_once('.') else {
        return false;
    };
    let header: Value =
        serde_json::from_slice(&unb64(input.split('.').next().unwrap_or_default())).unwrap();
    let Some(key) = set
        .keys
        .iter()
        .find(|k| header["kid"].as_str() == Some(k.id().as_str()))
    else {
        return false;
    };
    header["alg"].as_str() == Some(key.algorithm().name())
        && key.verify(input.as_bytes(), &unb64(signature))
}

#[test]
fn wycheproof_json_web_key_cases_all_come_out_as_expected() {
    let Some(dir) = vectors_dir() else { return };
    let path = dir.join("wycheproof/json_web_key_test.json");
    let suite: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut checked = 0;
    for group in suite["testGroups"].as_array().unwrap() {
        // A relying party holds the public set when there is one; the HMAC-only groups give
        // their keys (secrets) in the private set.
        let (set, form) = match group.get("public") {
            Some(public) => (public, JwkForm::Public),
            None => (&group["private"], JwkForm::Either),
        };
        let parsed = JwkSet::parse(&set.to_string(), form);
        for case in group["tests"].as_array().unwrap() {
            let expected = case["result"].as_str().unwrap() == "valid";
            let jws = case["jws"].as_str().unwrap();
            let got = parsed.as_ref().is_ok_and(|set| verifies(set, jws));
            assert_eq!(
                got,
                expected,
                "tcId {} ({}): {:?}",
                case["tcId"],
                case["comment"],
                parsed.as_ref().map(|s| s
                    .refused
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>())
            );
            checked += 1;
        }
        // Where the group gives the private keys too, they load as the public ones do (the
        // mixed set excepted: it is refused whole).
        if let (Some(private), Ok(public)) =
            (group.get("public").and(group.get("private")), &parsed)
        {
            let private = JwkSet::parse(&private.to_string(), JwkForm::Private).unwrap();
            assert_eq!(
                private.keys.len(),
                public.keys.len(),
                "{}",
                group["comment"]
            );
            assert!(private.keys.iter().all(|k| k.can_sign()));
        }
    }
    assert_eq!(checked, 26);
}

#[tokio::test]
async fn the_wycheproof_rs256_public_set_verifies_through_the_server_and_its_enc_twin_is_refused() {
    let Some(dir) = vectors_dir() else { return };
    let path = dir.join("wycheproof/json_web_key_test.json");
    let suite: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let groups = suite["testGroups"].as_array().unwrap();
    let case = |id: u64| {
        groups
            .iter()
            .find(|g| g["tests"][0]["tcId"] == id)
            .unwrap()
            .clone()
    };
    let good = case(5);
    let app_dir = tempfile::tempdir().unwrap();
    let file = write(app_dir.path(), "rs256.jwks", &good["public"]);
    let app = spawn_app_with(&format!("[profiles.w]\njwks_file = {file:?}\n")).await;
    let jws = good["tests"][0]["jws"].as_str().unwrap();
    // The payload is the text "foo", not a claim set: a signature that holds shows as a refusal
    // of the payload (phase three), one that does not as a bad signature (phase two).
    let answer = app.verify("w", jws).await;
    assert_eq!(answer.failure(), VerifyFailure::Malformed);
    let (input, _) = jws.rsplit_once('.').unwrap();
    let tampered = format!("{input}.{}", b64(&[0u8; 256]));
    assert_eq!(
        app.verify("w", &tampered).await.failure(),
        VerifyFailure::BadSignature
    );
    let enc = case(6);
    let message = start_up_error(
        "[profiles.w]\njwks_file = \"enc.jwks\"\n",
        &[("enc.jwks", enc["public"].to_string())],
    );
    assert!(
        message.contains("enc.jwks") && message.contains("\"use\""),
        "{message}"
    );
}

#[tokio::test]
async fn the_rfc_7520_keys_load_from_jwk_files_and_verify_their_examples() {
    let Some(dir) = vectors_dir() else { return };
    let jwk = |name: &str| dir.join("rfc/ietf-jose-cookbook/jwk").join(name);
    let example = |name: &str| -> String {
        let path = dir.join("rfc/ietf-jose-cookbook/jws").join(name);
        let json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        json["output"]["compact"].as_str().unwrap().to_owned()
    };
    let app = spawn_app_with(&format!(
        "[[keys]]\njwk_file = {ec:?}\n\n[[keys]]\njwk_file = {hmac:?}\n\n[profiles.ec]\nverify_keys = [\"bilbo.baggins@hobbiton.example\"]\n[profiles.hmac]\nverify_keys = [\"018c0ae5-4d9b-471b-bfd6-eef314bc7037\"]\n",
        ec = jwk("3_1.ec_public_key.json"),
        hmac = jwk("3_5.symmetric_key_mac_computation.json"),
    ))
    .await;
    // The examples sign a text, not a claim set: a signature that holds shows as a refusal of
    // the payload (phase three), one that does not as a bad signature (phase two).
    for (profile, name) in [
        ("ec", "4_3.ecdsa_signature.json"),
        ("hmac", "4_4.hmac-sha2_integrity_protection.json"),
    ] {
        let answer = app.verify(profile, &example(name)).await;
        assert_eq!(answer.failure(), VerifyFailure::Malformed, "{name}");
    }
    // The RSA key has no alg (the RFC uses it for RS256 and PS256): the config names it. As a
    // private JWK it signs, and verifies the RFC's RS256 example.
    let app = spawn_app_with(&format!(
        "[[keys]]\nalgorithm = \"RS256\"\njwk_file = {rsa:?}\n\n[profiles.rsa]\nsigning_key = \"bilbo.baggins@hobbiton.example\"\n",
        rsa = jwk("3_4.rsa_private_key.json"),
    ))
    .await;
    let answer = app
        .verify("rsa", &example("4_1.rsa_v15_signature.json"))
        .await;
    assert_eq!(answer.failure(), VerifyFailure::Malformed);
    let issued = app.issue("rsa", "bilbo").await;
    assert!(app.verify("rsa", &issued.token).await.valid);
    // The encryption key is refused by its use.
    let message = start_up_error(
        &format!(
            "[[keys]]\njwk_file = {:?}\n\n[profiles.p]\nverify_keys = [\"x\"]\n",
            jwk("3_6.symmetric_key_encryption.json")
        ),
        &[],
    );
    assert!(
        message.contains("\"use\"") && message.contains("\"enc\""),
        "{message}"
    );
}
