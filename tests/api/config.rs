//! Start-up refuses a bad configuration with the file, the key or profile, and the reason; the
//! shipped examples load and issue tokens in the shape the integrated systems expect.

use std::path::Path;

use serde_json::json;
use token_authority::proto::VerifyFailure;
use token_authority::state::config::{Config, ConfigSource};

use crate::helpers::*;

/// Loads `toml` as the file "bad.toml"; returns the full error message (as `serve` prints it).
fn start_up_error(toml: &str) -> String {
    test_env();
    let dir = tempfile::tempdir().unwrap();
    match Config::from_toml(toml, "bad.toml", dir.path()) {
        Ok(_) => panic!("config was accepted:\n{toml}"),
        Err(e) => format!("{e:#}"),
    }
}

fn key(id: &str, alg: &str, source: &str) -> String {
    format!("[[keys]]\nid = \"{id}\"\nalgorithm = \"{alg}\"\n{source}\n\n")
}

fn profile_using(id: &str) -> String {
    format!("[profiles.default]\nsigning_key = \"{id}\"\n")
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[test]
fn an_hmac_secret_shorter_than_its_hash_is_refused() {
    for (alg, len, min) in [
        ("HS256", 31, "32"),
        ("HS384", 47, "48"),
        ("HS512", 63, "64"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "x".repeat(len)).unwrap();
        let toml = key("short", alg, "secret_file = \"s\"") + &profile_using("short");
        let e = format!(
            "{:#}",
            Config::from_toml(&toml, "bad.toml", dir.path()).unwrap_err()
        );
        assert_mentions(&e, &["bad.toml", "\"short\"", &format!("{len} bytes"), min]);
    }
}

#[test]
fn a_key_whose_type_does_not_match_its_algorithm_is_refused() {
    let cases = [
        ("ES256", "ec-p384.pem"),
        ("ES384", "ec-p256.pem"),
        ("RS256", "ec-p256.pem"),
        ("EdDSA", "rsa-2048.pem"),
        ("ES256", "ed25519.pem"),
    ];
    for (alg, file) in cases {
        let source = format!("private_key_file = {:?}", fixture(file));
        let e = start_up_error(&(key("mismatch", alg, &source) + &profile_using("mismatch")));
        assert_mentions(&e, &["bad.toml", "\"mismatch\"", alg]);
    }
    let public = format!("public_key_file = {:?}", fixture("ec-p256.pub.pem"));
    let e =
        start_up_error(&(key("pub", "RS256", &public) + "[profiles.p]\nverify_keys = [\"pub\"]\n"));
    assert_mentions(&e, &["\"pub\"", "RS256", "EC key"]);
    let e = start_up_error(
        &(key(
            "hs",
            "HS256",
            &format!("private_key_file = {:?}", fixture("rsa-2048.pem")),
        ) + &profile_using("hs")),
    );
    assert_mentions(&e, &["\"hs\"", "HMAC", "secret_file"]);
}

#[test]
fn an_rsa_key_under_2048_bits_is_refused() {
    let private = format!("private_key_file = {:?}", fixture("rsa-1024.pem"));
    let e = start_up_error(&(key("small", "RS256", &private) + &profile_using("small")));
    assert_mentions(&e, &["\"small\"", "2048"]);
    let public = format!("public_key_file = {:?}", fixture("rsa-1024.pub.pem"));
    let e = start_up_error(
        &(key("small-pub", "RS256", &public) + "[profiles.p]\nverify_keys = [\"small-pub\"]\n"),
    );
    assert_mentions(&e, &["\"small-pub\"", "1024 bits", "2048"]);
}

#[test]
fn a_missing_file_or_environment_variable_is_refused() {
    let e = start_up_error(
        &(key(
            "gone",
            "ES256",
            "private_key_file = \"/nonexistent/key.pem\"",
        ) + &profile_using("gone")),
    );
    assert_mentions(
        &e,
        &[
            "bad.toml",
            "\"gone\"",
            "/nonexistent/key.pem",
            "No such file",
        ],
    );
    let e = start_up_error(
        &(key(
            "env",
            "HS256",
            "secret_env = \"TOKEN_AUTHORITY_TEST_UNSET\"",
        ) + &profile_using("env")),
    );
    assert_mentions(&e, &["\"env\"", "TOKEN_AUTHORITY_TEST_UNSET", "not set"]);
}

#[test]
fn a_profile_naming_an_unknown_key_is_refused() {
    let source = format!("private_key_file = {:?}", fixture("ec-p256.pem"));
    let e = start_up_error(&(key("real", "ES256", &source) + &profile_using("typo")));
    assert_mentions(
        &e,
        &[
            "bad.toml",
            "profile \"default\"",
            "signing_key",
            "\"typo\"",
            "\"real\"",
        ],
    );
    let e = start_up_error(
        &(key("real", "ES256", &source)
            + "[profiles.p]\nsigning_key = \"real\"\nverify_keys = [\"real\", \"old\"]\n"),
    );
    assert_mentions(&e, &["profile \"p\"", "verify_keys", "\"old\""]);
}

#[test]
fn duplicate_key_ids_are_refused() {
    let source = format!("private_key_file = {:?}", fixture("ec-p256.pem"));
    let e = start_up_error(
        &(key("twice", "ES256", &source)
            + &key("twice", "ES256", &source)
            + &profile_using("twice")),
    );
    assert_mentions(&e, &["bad.toml", "\"twice\"", "unique"]);
}

#[test]
fn unknown_fields_and_inconsistent_profiles_are_refused() {
    let source = format!("private_key_file = {:?}", fixture("ec-p256.pem"));
    let k = key("k", "ES256", &source);
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            k.clone() + "[profiles.default]\nsigning_key = \"k\"\nttl_seconds = 5\n",
            vec!["ttl_seconds"],
        ),
        (
            k.clone() + "[profiles.default]\nsigning_key = \"k\"\nttl = \"2h\"\nmax_ttl = \"1h\"\n",
            vec!["profile \"default\"", "ttl", "max_ttl"],
        ),
        (
            k.clone() + "[profiles.default]\nsigning_key = \"k\"\nttl = \"5 parsecs\"\n",
            vec!["ttl", "5 parsecs"],
        ),
        (
            k.clone()
                + "[profiles.default]\nsigning_key = \"k\"\nlogin_url = \"https://h/login\"\n",
            vec!["login_url", "{token}"],
        ),
        (
            k.clone() + "[profiles.default]\nsigning_key = \"k\"\nclaims = { exp = 1 }\n",
            vec!["claims.exp"],
        ),
        (
            k.clone() + "[profiles.default]\nsigning_key = \"k\"\nsubject_claim = \"iat\"\n",
            vec!["subject_claim", "iat"],
        ),
        (
            k.clone() + "[server]\nlisten = \"localhost\"\n",
            vec!["server.listen"],
        ),
        (k.clone(), vec!["no [profiles.NAME]"]),
        (
            k.clone()
                + &key(
                    "other",
                    "ES256",
                    &source.replace("ec-p256.pem", "ec-p256.sec1.pem"),
                )
                + "[profiles.default]\nsigning_key = \"k\"\nverify_keys = [\"other\"]\n",
            vec![
                "profile \"default\"",
                "verify_keys must include the signing_key \"k\"",
            ],
        ),
        (
            k.clone()
                + "[profiles.default]\nsigning_key = \"k\"\nclaims = { since = 1979-05-27T07:32:00Z }\n",
            vec!["claims.since", "TOML dates"],
        ),
        (
            k.clone() + "[profiles.default]\nsigning_key = \"k\"\nrequired_claims = [\"iss\"]\n",
            vec!["required_claims", "\"iss\"", "never carry"],
        ),
        (
            key("k", "none", &source) + &profile_using("k"),
            vec!["unknown algorithm", "\"none\""],
        ),
        (
            key(
                "k",
                "RS256",
                "generate = true\nprivate_key_file = \"rsa.pem\"",
            ) + &profile_using("k"),
            vec!["cannot generate", "RS256"],
        ),
        (
            key(
                "k",
                "ES256",
                "private_key_file = \"a.pem\"\npublic_key_file = \"b.pem\"",
            ) + &profile_using("k"),
            vec!["exactly one"],
        ),
    ];
    for (toml, parts) in cases {
        let e = start_up_error(&toml);
        assert_mentions(&e, &parts);
        assert!(e.starts_with("bad.toml"), "{e}");
    }
}

#[test]
fn bad_rotation_blocks_key_times_and_listeners_are_refused_with_the_reason() {
    let source = format!("private_key_file = {:?}", fixture("ec-p256.pem"));
    let managed = |rotation: &str| {
        format!("[profiles.m]\nttl = \"1m\"\nmax_ttl = \"2m\"\n[profiles.m.rotation]\n{rotation}\n")
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            managed("algorithm = \"RS256\"\nrotate_every = \"1h\""),
            vec![
                "profile \"m\"",
                "rotation",
                "RS256",
                "give RSA keys as files",
            ],
        ),
        (
            managed("algorithm = \"ES256\"\nrotate_every = \"0s\""),
            vec!["rotate_every", "at least 1s"],
        ),
        (
            managed("algorithm = \"ES256\"\nrotate_every = \"1m\"\npublish_ahead = \"1h\""),
            vec!["publish_ahead", "16 times rotate_every"],
        ),
        (
            managed("algorithm = \"ES256\"\nrotate_every = \"1h\"\nevery = \"1h\""),
            vec!["unknown field `every`"],
        ),
        (
            key("k", "ES256", &source)
                + "[profiles.m]\nsigning_key = \"k\"\n[profiles.m.rotation]\nalgorithm = \"ES256\"\nrotate_every = \"1h\"\n",
            vec!["rotation block", "remove signing_key"],
        ),
        (
            key(
                "k",
                "ES256",
                &format!(
                    "{source}\nnot_before = \"2027-01-01T00:00:00Z\"\nnot_after = \"2026-01-01T00:00:00Z\""
                ),
            ) + &profile_using("k"),
            vec!["key \"k\"", "not_before must be earlier than not_after"],
        ),
        (
            key(
                "k",
                "ES256",
                &format!("{source}\nnot_before = \"next tuesday\""),
            ) + &profile_using("k"),
            vec!["key \"k\"", "not_before", "next tuesday", "UTC time"],
        ),
        (
            key("k", "ES256", &source) + "[server]\nhttp_listen = \"8080\"\n" + &profile_using("k"),
            vec!["server.http_listen", "IP:PORT"],
        ),
        (
            key("k", "ES256", &source) + "[server]\njwks_cache = \"1.5s\"\n" + &profile_using("k"),
            vec!["server.jwks_cache", "whole seconds"],
        ),
    ];
    for (toml, parts) in cases {
        let e = start_up_error(&toml);
        assert_mentions(&e, &parts);
        assert!(e.starts_with("bad.toml"), "{e}");
    }
}

#[tokio::test]
async fn the_managed_keys_example_loads_and_both_profiles_issue_tokens_that_verify() {
    let app = spawn_example("managed.toml").await;
    for (profile, alg) in [("internal", "ES256"), ("partner", "EdDSA")] {
        let issued = app.issue(profile, "svc-a").await;
        assert_eq!(issued.algorithm, alg);
        assert!(app.verify(profile, &issued.token).await.valid);
    }
}

#[test]
fn openssl_key_formats_load_sec1_ec_pkcs1_rsa_and_base64_secrets() {
    test_env();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b64.secret"),
        "dGVzdC1zZWNyZXQtb2YtZXhhY3RseS0zMi1ieXRlcyE=\n",
    )
    .unwrap();
    let toml = key(
        "sec1",
        "ES256",
        &format!("private_key_file = {:?}", fixture("ec-p256.sec1.pem")),
    ) + &key(
        "pkcs1",
        "RS256",
        &format!("private_key_file = {:?}", fixture("rsa-2048.pkcs1.pem")),
    ) + &key(
        "b64",
        "HS256",
        "secret_file = \"b64.secret\"\nsecret_encoding = \"base64\"",
    ) + "[profiles.a]\nsigning_key = \"sec1\"\n[profiles.b]\nsigning_key = \"pkcs1\"\n[profiles.c]\nsigning_key = \"b64\"\n";
    let config = Config::from_toml(&toml, "good.toml", dir.path()).unwrap();
    assert_eq!(config.profiles.len(), 3);
    assert!(config.keys.get("sec1").unwrap().can_sign());
}

/// Starts the server on an example config and returns it.
async fn spawn_example(name: &str) -> TestApp {
    test_env();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    // The example must load from its file exactly as `serve --config` would.
    Config::load(
        ConfigSource::File(path.clone()),
        Path::new("/nonexistent-data-dir"),
    )
    .unwrap();
    spawn_app_with(&std::fs::read_to_string(&path).unwrap()).await
}

#[tokio::test]
async fn the_seatable_example_makes_sso_links_seatable_accepts() {
    let app = spawn_example("seatable.toml").await;
    let link = app
        .client
        .clone()
        .login_url(token_authority::proto::LoginUrlRequest {
            profile: "seatable".into(),
            subject: "a7b3c@auth.local".into(),
            next: "/workspace/1/".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        link.url
            .starts_with("https://cloud.seatable.io/sso-auto-login/?token="),
        "{}",
        link.url
    );
    assert_eq!(header(&link.token)["alg"], "HS256");
    let claims = payload(&link.token);
    assert_eq!(claims["user_id"], "a7b3c@auth.local");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        30
    );
    // SeaTable verifies with its SSO_SECRET_KEY, used byte for byte.
    let key = jwt_simple::prelude::HS256Key::from_bytes(SEATABLE_SECRET.as_bytes());
    use jwt_simple::prelude::MACLike as _;
    key.verify_token::<serde_json::Map<String, serde_json::Value>>(&link.token, None)
        .unwrap();
}

#[tokio::test]
async fn the_weavy_example_issues_short_tokens_with_the_claims_weavy_requires() {
    let app = spawn_example("weavy.toml").await;
    let claims = json!({"email": "ada@example.com", "name": "Ada", "picture": "https://example.com/ada.png"});
    let issued = app.issue_with_claims("weavy", "42", claims).await;
    let claims = payload(&issued.token);
    for claim in ["exp", "iss", "sub", "email", "name", "picture"] {
        assert!(claims.contains_key(claim), "{claim}");
    }
    assert_eq!(claims["iss"], "weavy-client-id");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        10
    );
    assert!(app.verify("weavy", &issued.token).await.valid);
    // Weavy refuses a token without email, so the profile neither issues nor accepts one.
    let status = app
        .issue_status(token_authority::proto::IssueRequest {
            profile: "weavy".into(),
            subject: "42".into(),
            ..Default::default()
        })
        .await;
    assert_status(&status, tonic::Code::InvalidArgument, "claims.email");
    let no_email = hs256_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &json!({"iss": "weavy-client-id", "sub": "42", "exp": now() + 10}).to_string(),
        SEATABLE_SECRET.as_bytes(),
    );
    let answer = app.verify("weavy", &no_email).await;
    assert_eq!(
        answer.failure(),
        VerifyFailure::MissingClaim,
        "{}",
        answer.detail
    );
    assert!(answer.detail.contains("email"), "{}", answer.detail);
}

#[tokio::test]
async fn the_simplejwt_example_issues_access_and_refresh_tokens_that_never_swap() {
    let app = spawn_example("simplejwt.toml").await;
    let access = app.issue("access", "42").await;
    let claims = payload(&access.token);
    assert_eq!(claims["token_type"], "access");
    assert_eq!(claims["user_id"], "42");
    assert_eq!(claims["jti"], access.token_id.as_str());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    let refresh = app.issue("refresh", "42").await;
    let claims = payload(&refresh.token);
    assert_eq!(claims["token_type"], "refresh");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        24 * 3600
    );

    assert!(app.verify("access", &access.token).await.valid);
    assert_eq!(
        app.verify("access", &refresh.token).await.failure(),
        VerifyFailure::ClaimMismatch
    );
    assert_eq!(
        app.verify("refresh", &access.token).await.failure(),
        VerifyFailure::ClaimMismatch
    );
}

#[test]
fn a_bare_number_for_any_duration_setting_says_how_to_write_it() {
    let managed = "[profiles.m]\n[profiles.m.rotation]\nalgorithm = \"ES256\"\n";
    let cases = [
        (
            "jwks_cache",
            format!("[server]\njwks_cache = 300\n{managed}rotate_every = \"1h\"\n"),
        ),
        (
            "drain_timeout",
            format!("[server]\ndrain_timeout = 10\n{managed}rotate_every = \"1h\"\n"),
        ),
        ("rotate_every", format!("{managed}rotate_every = 86400\n")),
        (
            "publish_ahead",
            format!("{managed}rotate_every = \"1h\"\npublish_ahead = 600\n"),
        ),
    ];
    for (field, toml) in cases {
        let e = start_up_error(&toml);
        assert_mentions(
            &e,
            &["bad.toml", field, "bare number", "write a duration as text"],
        );
    }
}
