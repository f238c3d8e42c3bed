use std::time::Duration;

use serde_json::json;
use token_authority::proto::{VerifyFailure, VerifyResponse};
use tonic::Code;

use crate::helpers::*;

fn assert_refused(answer: &VerifyResponse, failure: VerifyFailure, detail_has: &str) {
    assert!(!answer.valid, "expected a refusal ({failure:?}), got valid");
    assert_eq!(answer.failure(), failure, "detail: {}", answer.detail);
    assert!(
        answer.detail.contains(detail_has),
        "detail {:?} should mention {detail_has:?}",
        answer.detail
    );
    assert!(
        answer.claims.is_none() && answer.header.is_none(),
        "a refusal carries no claims"
    );
    assert!(answer.key_id.is_empty() && answer.expires_at.is_none());
}

/// An HS256 token for the "hs256" profile with exactly these header and payload texts.
fn hs256(header: &str, payload: &str) -> String {
    hs256_raw(header, payload, HS256_SECRET)
}

/// Claims issued now by the server's own clock (stopped at spawn), valid for a minute. Stamped
/// with the wall clock instead, a second boundary between spawn and this call would make the
/// token "issued in the future" for the server.
fn fresh_payload(app: &TestApp) -> String {
    let now = app.unix_now();
    json!({"sub": "alice", "iat": now, "exp": now + 60}).to_string()
}

const KID_HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"hs256-key"}"#;

#[tokio::test]
async fn verify_accepts_a_token_it_issued_and_returns_its_claims_and_header() {
    let app = spawn_app().await;
    let issued = app.issue("default", "alice").await;
    let answer = app.verify("default", &issued.token).await;
    assert!(answer.valid, "{}", answer.detail);
    assert_eq!(answer.failure(), VerifyFailure::Unspecified);
    let claims = from_struct(answer.claims.as_ref().unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "https://auth.test");
    let header = from_struct(answer.header.as_ref().unwrap());
    assert_eq!(header["kid"], "es256-key");
    assert_eq!(answer.key_id, "es256-key");
    assert_eq!(answer.algorithm, "ES256");
    assert_eq!(answer.subject, "alice");
    assert_eq!(answer.token_id, issued.token_id);
    assert_eq!(answer.expires_at, issued.expires_at);
}

#[tokio::test]
async fn verify_refuses_a_tampered_payload() {
    let app = spawn_app().await;
    let token = app.issue("hs256", "alice").await.token;
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(
        json!({"sub": "mallory", "iat": app.unix_now(), "exp": app.unix_now() + 3600})
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_refused(
        &app.verify("hs256", &tampered).await,
        VerifyFailure::BadSignature,
        "signature",
    );
}

#[tokio::test]
async fn verify_refuses_a_tampered_signature_for_every_algorithm() {
    let app = spawn_app().await;
    for alg in ALGORITHMS {
        let profile = alg.to_lowercase();
        let token = app.issue(&profile, "alice").await.token;
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut sig = sig.as_bytes().to_vec();
        // Flip one bit in the middle of the signature, keeping it canonical base64url.
        let i = sig.len() / 2;
        sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{input}.{}", String::from_utf8(sig).unwrap());
        assert_refused(
            &app.verify(&profile, &tampered).await,
            VerifyFailure::BadSignature,
            "signature",
        );
    }
}

#[tokio::test]
async fn verify_refuses_an_unsigned_alg_none_token() {
    let app = spawn_app().await;
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let token = format!("{header}.{}.", b64(fresh_payload(&app).as_bytes()));
        assert_refused(
            &app.verify("hs256", &token).await,
            VerifyFailure::AlgorithmNotAllowed,
            "none",
        );
    }
}

#[tokio::test]
async fn verify_refuses_hs256_signed_with_the_rsa_public_key_as_secret() {
    let app = spawn_app().await;
    // The classic key-confusion attack: the attacker knows the public key and uses it as an
    // HMAC secret, hoping the verifier will take "alg" from the header.
    let public_pem = fixture_text("rsa-2048.pub.pem");
    for kid in [None, Some("rs256-key")] {
        let header = match kid {
            Some(kid) => json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
            None => json!({"alg": "HS256", "typ": "JWT"}),
        };
        let token = hs256_raw(
            &header.to_string(),
            &fresh_payload(&app),
            public_pem.as_bytes(),
        );
        assert_refused(
            &app.verify("rs256", &token).await,
            VerifyFailure::AlgorithmNotAllowed,
            "RS256",
        );
    }
}

#[tokio::test]
async fn verify_refuses_an_expired_token_once_the_clock_passes_exp() {
    let app = spawn_app().await;
    let token = app.issue("hs256", "alice").await.token;
    app.clock.advance(Duration::from_secs(299));
    assert!(
        app.verify("hs256", &token).await.valid,
        "one second before exp"
    );
    app.clock.advance(Duration::from_secs(1));
    assert_refused(
        &app.verify("hs256", &token).await,
        VerifyFailure::Expired,
        "expired",
    );
}

#[tokio::test]
async fn verify_allows_the_profile_leeway_and_no_more() {
    let app = spawn_app().await;
    let token = app
        .issue_with_claims("strict", "alice", json!({"email": "a@example.com"}))
        .await
        .token;
    app.clock.advance(Duration::from_secs(300 + 4));
    assert!(
        app.verify_for("strict", &token, "billing").await.valid,
        "4s past exp is within the 5s leeway"
    );
    app.clock.advance(Duration::from_secs(1));
    assert_refused(
        &app.verify_for("strict", &token, "billing").await,
        VerifyFailure::Expired,
        "expired",
    );
}

#[tokio::test]
async fn verify_refuses_a_token_that_is_not_yet_valid() {
    let app = spawn_app().await;
    let nbf_later =
        json!({"sub": "alice", "nbf": app.unix_now() + 120, "exp": app.unix_now() + 600})
            .to_string();
    assert_refused(
        &app.verify("hs256", &hs256(KID_HEADER, &nbf_later)).await,
        VerifyFailure::NotYetValid,
        "not valid",
    );

    let issued_later =
        json!({"sub": "alice", "iat": app.unix_now() + 120, "exp": app.unix_now() + 600})
            .to_string();
    assert_refused(
        &app.verify("hs256", &hs256(KID_HEADER, &issued_later)).await,
        VerifyFailure::NotYetValid,
        "future",
    );

    // Once the clock reaches nbf the same token is fine.
    app.clock.advance(Duration::from_secs(125));
    assert!(
        app.verify("hs256", &hs256(KID_HEADER, &nbf_later))
            .await
            .valid
    );
}

#[tokio::test]
async fn verify_refuses_a_token_without_exp() {
    let app = spawn_app().await;
    let token = hs256(
        KID_HEADER,
        &json!({"sub": "alice", "iat": app.unix_now()}).to_string(),
    );
    assert_refused(
        &app.verify("hs256", &token).await,
        VerifyFailure::MissingClaim,
        "exp",
    );
}

#[tokio::test]
async fn verify_refuses_a_token_from_another_issuer() {
    let app = spawn_app().await;
    let token = jose_sign(
        "ES256",
        claims_for("alice", json!({}), 60).with_issuer("https://evil.test"),
        Some("es256-key"),
    );
    assert_refused(
        &app.verify("default", &token).await,
        VerifyFailure::WrongIssuer,
        "https://evil.test",
    );
    let no_issuer = jose_sign(
        "ES256",
        claims_for("alice", json!({}), 60),
        Some("es256-key"),
    );
    assert_refused(
        &app.verify("default", &no_issuer).await,
        VerifyFailure::MissingClaim,
        "iss",
    );
}

#[tokio::test]
async fn verify_checks_the_audience_from_the_profile_or_the_request() {
    let app = spawn_app().await;
    let token = |aud: serde_json::Value| {
        hs256(
            KID_HEADER,
            &json!({"sub": "alice", "exp": app.unix_now() + 60, "aud": aud}).to_string(),
        )
    };
    // Profile "override" expects "default-audience".
    assert!(
        app.verify("override", &token(json!("default-audience")))
            .await
            .valid
    );
    assert!(
        app.verify("override", &token(json!(["x", "default-audience"])))
            .await
            .valid
    );
    assert_refused(
        &app.verify("override", &token(json!("billing"))).await,
        VerifyFailure::WrongAudience,
        "billing",
    );
    // An audience in the request replaces the profile's.
    assert!(
        app.verify_for("override", &token(json!("billing")), "billing")
            .await
            .valid
    );
    assert_refused(
        &app.verify_for("override", &token(json!("default-audience")), "billing")
            .await,
        VerifyFailure::WrongAudience,
        "billing",
    );
    // No aud where one is expected; an aud where none is expected.
    let no_aud = hs256(
        KID_HEADER,
        &json!({"sub": "alice", "exp": app.unix_now() + 60}).to_string(),
    );
    assert_refused(
        &app.verify("override", &no_aud).await,
        VerifyFailure::MissingClaim,
        "aud",
    );
    assert_refused(
        &app.verify("hs256", &token(json!("billing"))).await,
        VerifyFailure::WrongAudience,
        "billing",
    );
}

#[tokio::test]
async fn verify_refuses_an_unknown_kid() {
    let app = spawn_app().await;
    let token = hs256(
        r#"{"alg":"HS256","typ":"JWT","kid":"who-knows"}"#,
        &fresh_payload(&app),
    );
    assert_refused(
        &app.verify("hs256", &token).await,
        VerifyFailure::UnknownKey,
        "who-knows",
    );
    // A kid of another profile's key is unknown here too.
    let token = hs256(
        r#"{"alg":"HS256","typ":"JWT","kid":"hs256-second"}"#,
        &fresh_payload(&app),
    );
    assert_refused(
        &app.verify("hs256", &token).await,
        VerifyFailure::UnknownKey,
        "hs256-second",
    );
}

#[tokio::test]
async fn verify_needs_a_kid_when_the_profile_has_several_keys() {
    let app = spawn_app().await;
    let no_kid = hs256(r#"{"alg":"HS256","typ":"JWT"}"#, &fresh_payload(&app));
    assert_refused(
        &app.verify("two-keys", &no_kid).await,
        VerifyFailure::UnknownKey,
        "kid",
    );
    // With one verify key, a token without kid (as other systems make them) is accepted.
    assert!(app.verify("hs256", &no_kid).await.valid);
    // Each of several keys verifies the tokens that name it.
    let second = hs256_raw(
        r#"{"alg":"HS256","typ":"JWT","kid":"hs256-second"}"#,
        &fresh_payload(&app),
        SECOND_SECRET.as_bytes(),
    );
    let answer = app.verify("two-keys", &second).await;
    assert!(answer.valid, "{}", answer.detail);
    assert_eq!(answer.key_id, "hs256-second");
    assert!(
        app.verify("two-keys", &hs256(KID_HEADER, &fresh_payload(&app)))
            .await
            .valid
    );
}

#[tokio::test]
async fn verify_refuses_a_token_missing_a_required_claim() {
    let app = spawn_app().await;
    let payload = json!({"sub": "alice", "exp": app.unix_now() + 60});
    let token = hs256_raw(
        r#"{"alg":"HS256","kid":"hs256-key"}"#,
        &payload.to_string(),
        HS256_SECRET,
    );
    // The seatable profile requires user_id (its subject claim) and exp.
    assert_refused(
        &app.verify("seatable", &token).await,
        VerifyFailure::MissingClaim,
        "user_id",
    );
    // The strict profile requires email.
    let strict = jose_sign(
        "ES256",
        claims_for("alice", json!({}), 60)
            .with_issuer("https://auth.test")
            .with_audience("billing"),
        Some("es256-key"),
    );
    // jwt-simple writes typ "JWT", so the strict profile refuses it on typ before claims.
    assert_refused(
        &app.verify("strict", &strict).await,
        VerifyFailure::WrongType,
        "at+jwt",
    );
    // Issue refuses to make such a token, so an outside signer makes it.
    use jwt_simple::prelude::*;
    let options = HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    let claims = claims_for("alice", json!({"name": "Alice"}), 60)
        .with_issuer("https://auth.test")
        .with_audience("billing");
    let without_email = ES256KeyPair::from_pem(&fixture_text("ec-p256.pem"))
        .unwrap()
        .with_key_id("es256-key")
        .sign_with_options(claims, &options)
        .unwrap();
    assert_refused(
        &app.verify_for("strict", &without_email, "billing").await,
        VerifyFailure::MissingClaim,
        "email",
    );
}

#[tokio::test]
async fn verify_requires_the_profile_typ_so_tokens_of_one_profile_never_pass_as_another() {
    let app = spawn_app().await;
    let token = app
        .issue_with_claims("strict", "alice", json!({"email": "a@example.com"}))
        .await
        .token;
    assert_eq!(header(&token)["typ"], "at+jwt");
    assert!(app.verify_for("strict", &token, "reports").await.valid);

    // A token of the default profile (same key, typ JWT) does not pass as a strict one.
    let plain = app.issue("default", "alice").await.token;
    assert_refused(
        &app.verify_for("strict", &plain, "billing").await,
        VerifyFailure::WrongType,
        "at+jwt",
    );
}

#[tokio::test]
async fn verify_refuses_a_token_whose_fixed_claim_differs() {
    let app = spawn_app().await;
    let refresh = app.issue("refresh", "42").await.token;
    assert!(app.verify("refresh", &refresh).await.valid);
    assert_refused(
        &app.verify("access", &refresh).await,
        VerifyFailure::ClaimMismatch,
        "token_type",
    );
}

#[tokio::test]
async fn verify_refuses_a_crit_header_even_when_signed() {
    let app = spawn_app().await;
    for header in [
        r#"{"alg":"HS256","kid":"hs256-key","crit":["exp"],"exp":1}"#,
        r#"{"alg":"HS256","kid":"hs256-key","b64":false,"crit":["b64"]}"#,
    ] {
        assert_refused(
            &app.verify("hs256", &hs256(header, &fresh_payload(&app)))
                .await,
            VerifyFailure::Malformed,
            "crit",
        );
    }
}

#[tokio::test]
async fn verify_ignores_jku_x5u_jwk_and_x5c_headers_and_uses_only_configured_keys() {
    let app = spawn_app().await;
    // The token names an attacker's key by URL and inline; it is signed with a secret we do not
    // hold, so it must fail on the signature of our own key.
    let header = json!({
        "alg": "HS256", "kid": "hs256-key",
        "jku": "https://evil.test/jwks.json", "x5u": "https://evil.test/cert.pem",
        "jwk": {"kty": "oct", "k": "YXR0YWNrZXI"}, "x5c": ["MIIB"]
    });
    let token = hs256_raw(
        &header.to_string(),
        &fresh_payload(&app),
        b"attacker-secret-attacker-secret-",
    );
    assert_refused(
        &app.verify("hs256", &token).await,
        VerifyFailure::BadSignature,
        "hs256-key",
    );
}

#[tokio::test]
async fn verify_refuses_malformed_tokens_before_any_crypto() {
    let app = spawn_app().await;
    let good = app.issue("hs256", "alice").await.token;
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "three"),
        ("not a token".into(), "three"),
        (format!("{h}.{p}"), "three"),
        (format!("{h}.{p}.{s}.x.y"), "JWE"),
        (format!("{h}.{p}.{s}="), "base64url"),
        (format!("{h}=.{p}.{s}"), "base64url"),
        // "+" and "/" belong to standard base64, not base64url.
        (format!("{h}.{p}.+{}", &s[1..]), "base64url"),
        (format!("{h}.{p}./{}", &s[1..]), "base64url"),
        (format!("{h}.{p} .{s}"), "base64url"),
        (format!(".{p}.{s}"), "header"),
        (format!("{}.{p}.{s}", b64(b"[1,2]")), "header"),
        (format!("{}.{p}.{s}", b64(b"{not json")), "header"),
        ("a".repeat(9000), "8192"),
    ];
    for (token, detail) in cases {
        let answer = app.verify("hs256", &token).await;
        assert_refused(&answer, VerifyFailure::Malformed, detail);
    }
    // Non-canonical base64: the last character of a part carries trailing bits that must be zero.
    let sig_bytes = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    assert_eq!(
        sig_bytes.len() % 3,
        2,
        "an HS256 signature leaves 2 spare bits"
    );
    let last = s.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let sibling = alphabet.chars().nth(idx ^ 1).unwrap();
    let non_canonical = format!("{h}.{p}.{}{sibling}", &s[..s.len() - 1]);
    assert_refused(
        &app.verify("hs256", &non_canonical).await,
        VerifyFailure::Malformed,
        "base64url",
    );
}

#[tokio::test]
async fn verify_refuses_duplicate_members_in_header_or_claims() {
    let app = spawn_app().await;
    let dup_header = r#"{"alg":"HS256","kid":"hs256-key","kid":"hs256-key"}"#;
    assert_refused(
        &app.verify("hs256", &hs256(dup_header, &fresh_payload(&app)))
            .await,
        VerifyFailure::Malformed,
        "duplicate",
    );
    let dup_claims = format!(
        r#"{{"sub":"alice","sub":"mallory","exp":{}}}"#,
        app.unix_now() + 60
    );
    assert_refused(
        &app.verify("hs256", &hs256(KID_HEADER, &dup_claims)).await,
        VerifyFailure::Malformed,
        "duplicate",
    );
    let nested = format!(
        r#"{{"sub":"alice","exp":{},"org":{{"id":1,"id":2}}}}"#,
        app.unix_now() + 60
    );
    assert_refused(
        &app.verify("hs256", &hs256(KID_HEADER, &nested)).await,
        VerifyFailure::Malformed,
        "duplicate",
    );
}

#[tokio::test]
async fn verify_refuses_registered_claims_of_the_wrong_json_type() {
    let app = spawn_app().await;
    let exp = app.unix_now() + 60;
    let cases = [
        (json!({"sub": "alice", "exp": exp.to_string()}), "exp"),
        (json!({"sub": "alice", "exp": exp, "nbf": "0"}), "nbf"),
        (json!({"sub": "alice", "exp": exp, "iat": null}), "iat"),
        (json!({"sub": "alice", "exp": exp, "aud": 7}), "aud"),
        (json!({"sub": "alice", "exp": exp, "aud": ["ok", 7]}), "aud"),
    ];
    for (claims, detail) in cases {
        let answer = app
            .verify("hs256", &hs256(KID_HEADER, &claims.to_string()))
            .await;
        assert_refused(&answer, VerifyFailure::Malformed, detail);
    }
    let not_object = hs256(KID_HEADER, "[1]");
    assert_refused(
        &app.verify("hs256", &not_object).await,
        VerifyFailure::Malformed,
        "object",
    );
}

#[tokio::test]
async fn verify_with_an_unknown_profile_is_not_found_and_a_refusal_is_not_an_error() {
    let app = spawn_app().await;
    let status = app
        .client
        .clone()
        .verify(token_authority::proto::VerifyRequest {
            token: "x".into(),
            profile: "nope".into(),
            audience: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Garbage is an answer with status OK, not a gRPC error.
    let answer = app.verify("default", "garbage").await;
    assert!(!answer.valid);
}
