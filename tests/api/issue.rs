use serde_json::json;
use token_authority::proto::IssueRequest;
use tonic::Code;

use crate::helpers::*;

fn request(profile: &str, subject: &str) -> IssueRequest {
    IssueRequest {
        profile: profile.into(),
        subject: subject.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn issue_signs_a_token_with_header_and_registered_claims() {
    let app = spawn_app().await;
    let issued = app.issue("", "alice").await;

    let header = header(&issued.token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], "es256-key");
    assert_eq!(header.len(), 3, "no other header members: {header:?}");

    let claims = payload(&issued.token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "https://auth.test");
    assert_eq!(claims["jti"], issued.token_id.as_str());
    let iat = claims["iat"].as_u64().expect("iat is an integer");
    let exp = claims["exp"].as_u64().expect("exp is an integer");
    assert_eq!(exp - iat, 300, "the profile's 5m ttl");
    assert_eq!(issued.issued_at.unwrap().seconds as u64, iat);
    assert_eq!(issued.expires_at.unwrap().seconds as u64, exp);
    assert_eq!(issued.key_id, "es256-key");
    assert_eq!(issued.algorithm, "ES256");
    assert!(
        !claims.contains_key("aud"),
        "the default profile sets no audience"
    );
}

#[tokio::test]
async fn issue_under_an_empty_profile_name_uses_the_default_profile() {
    let app = spawn_app().await;
    let issued = app.issue("", "alice").await;
    assert_eq!(
        issued.key_id, "es256-key",
        "the default profile's signing key"
    );
    let answer = app.verify("default", &issued.token).await;
    assert!(answer.valid, "{}", answer.detail);
    assert!(
        app.verify("", &issued.token).await.valid,
        "verify with an empty profile name too"
    );
}

#[tokio::test]
async fn issue_sets_extra_claims_beside_its_own_and_keeps_integers_integral() {
    let app = spawn_app().await;
    let mut req = request("hs256", "bob");
    req.claims = Some(to_struct(json!({
        "email": "bob@example.com",
        "n": 42,
        "ratio": 0.5,
        "roles": ["admin", "dev"],
        "org": {"id": 7, "name": "Acme"},
        "active": true,
        "nothing": null
    })));
    let issued = app.client.clone().issue(req).await.unwrap().into_inner();
    let claims = payload(&issued.token);
    assert_eq!(claims["email"], "bob@example.com");
    assert!(
        claims["n"].is_u64(),
        "42 stays an integer, not 42.0: {}",
        claims["n"]
    );
    assert_eq!(claims["n"], 42);
    assert_eq!(claims["ratio"], 0.5);
    assert_eq!(claims["roles"], json!(["admin", "dev"]));
    assert_eq!(claims["org"], json!({"id": 7, "name": "Acme"}));
    assert_eq!(claims["active"], true);
    assert_eq!(claims["nothing"], serde_json::Value::Null);
    assert_eq!(claims["sub"], "bob");
}

#[tokio::test]
async fn issue_refuses_claims_the_service_owns_naming_the_claim() {
    let app = spawn_app().await;
    for claim in ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"] {
        let mut req = request("default", "alice");
        req.claims = Some(to_struct(json!({ claim: "x" })));
        let status = app.issue_status(req).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{claim}");
        assert!(
            status.message().contains(&format!("claims.{claim}")),
            "{claim}: {}",
            status.message()
        );
    }
    // The profile's subject claim and its fixed claims belong to the service too.
    for (profile, claim) in [("seatable", "user_id"), ("access", "token_type")] {
        let mut req = request(profile, "alice");
        req.claims = Some(to_struct(json!({ claim: "x" })));
        let status = app.issue_status(req).await;
        assert_status(&status, Code::InvalidArgument, &format!("claims.{claim}"));
    }
}

#[tokio::test]
async fn issue_refuses_an_empty_blank_or_oversized_subject() {
    let app = spawn_app().await;
    let status = app.issue_status(request("default", "")).await;
    assert_status(&status, Code::InvalidArgument, "subject");
    let status = app.issue_status(request("default", " \t  ")).await;
    assert_status(&status, Code::InvalidArgument, "subject: must not be empty");

    let long = "x".repeat(1025);
    let status = app.issue_status(request("default", &long)).await;
    assert_status(&status, Code::InvalidArgument, "subject");
    assert_status(&status, Code::InvalidArgument, "1024");
}

#[tokio::test]
async fn issue_under_an_unknown_profile_is_not_found() {
    let app = spawn_app().await;
    let status = app.issue_status(request("no-such-profile", "alice")).await;
    assert_status(&status, Code::NotFound, "no-such-profile");
}

#[tokio::test]
async fn issue_honours_a_requested_ttl_and_refuses_one_above_max_ttl() {
    let app = spawn_app().await;
    let mut req = request("default", "alice");
    req.ttl = Some(prost_types::Duration {
        seconds: 600,
        nanos: 0,
    });
    let issued = app.client.clone().issue(req).await.unwrap().into_inner();
    let claims = payload(&issued.token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );

    let mut req = request("default", "alice");
    req.ttl = Some(prost_types::Duration {
        seconds: 3601,
        nanos: 0,
    });
    let status = app.issue_status(req).await;
    assert_status(&status, Code::InvalidArgument, "ttl");
    assert_status(&status, Code::InvalidArgument, "max_ttl");

    for bad in [
        prost_types::Duration {
            seconds: -5,
            nanos: 0,
        },
        prost_types::Duration {
            seconds: 0,
            nanos: 500_000_000,
        },
    ] {
        let mut req = request("default", "alice");
        req.ttl = Some(bad);
        let status = app.issue_status(req).await;
        assert_status(&status, Code::InvalidArgument, "ttl");
    }
}

#[tokio::test]
async fn issue_overrides_the_audience_only_where_the_profile_allows_it() {
    let app = spawn_app().await;
    let issued = app.issue("override", "alice").await;
    assert_eq!(payload(&issued.token)["aud"], "default-audience");

    let mut req = request("override", "alice");
    req.audience = vec!["billing".into(), "reports".into()];
    let issued = app.client.clone().issue(req).await.unwrap().into_inner();
    assert_eq!(payload(&issued.token)["aud"], json!(["billing", "reports"]));
    assert!(
        app.verify_for("override", &issued.token, "reports")
            .await
            .valid
    );

    let mut req = request("default", "alice");
    req.audience = vec!["billing".into()];
    let status = app.issue_status(req).await;
    assert_status(&status, Code::InvalidArgument, "audience");
}

#[tokio::test]
async fn issue_refuses_claims_over_the_size_limit_and_non_finite_numbers() {
    let app = spawn_app().await;
    let mut req = request("default", "alice");
    req.claims = Some(to_struct(json!({ "blob": "x".repeat(5000) })));
    let status = app.issue_status(req).await;
    assert_status(&status, Code::InvalidArgument, "claims");
    assert_status(&status, Code::InvalidArgument, "4096");

    let mut req = request("default", "alice");
    let mut claims = prost_types::Struct::default();
    claims.fields.insert(
        "score".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::NumberValue(f64::INFINITY)),
        },
    );
    req.claims = Some(claims);
    let status = app.issue_status(req).await;
    assert_status(&status, Code::InvalidArgument, "claims.score");
}

#[tokio::test]
async fn issue_never_hands_out_a_token_its_own_profile_would_refuse_as_too_long() {
    let app = spawn_app().await;
    let small = app.issue("tiny", "alice").await;
    assert!(small.token.len() <= 256);
    assert!(app.verify("tiny", &small.token).await.valid);

    let mut req = request("tiny", "alice");
    req.claims = Some(to_struct(json!({ "note": "x".repeat(120) })));
    let status = app.issue_status(req).await;
    assert_status(&status, Code::InvalidArgument, "max_token_bytes of 256");
}

#[tokio::test]
async fn issue_on_a_verify_only_profile_is_a_failed_precondition() {
    let app = spawn_app().await;
    let status = app.issue_status(request("partner", "alice")).await;
    assert_status(&status, Code::FailedPrecondition, "verify-only");
}

#[tokio::test]
async fn issue_gives_every_token_its_own_128_bit_token_id() {
    use base64::Engine as _;
    let app = spawn_app().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let issued = app.issue("hs256", "alice").await;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&issued.token_id)
            .unwrap();
        assert!(raw.len() >= 16, "jti carries at least 128 bits");
        assert!(seen.insert(issued.token_id), "jti repeated");
    }
}

#[tokio::test]
async fn requests_over_the_size_limit_are_refused_before_any_work() {
    let app = spawn_app().await;
    let status = app
        .issue_status(request("default", &"x".repeat(70 * 1024)))
        .await;
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{:?}: {}",
        status.code(),
        status.message()
    );
}
