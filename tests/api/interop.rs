//! Both directions with an independent JOSE implementation (jwt-simple: its own crypto and its
//! own JWS code): tokens we issue verify there, tokens it makes verify here.

use jwt_simple::prelude::*;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn tokens_we_issue_verify_in_an_independent_jose_library_for_every_algorithm() {
    let app = spawn_app().await;
    for alg in ALGORITHMS {
        let claims = json!({"email": "alice@example.com", "n": 7});
        let issued = app
            .issue_with_claims(&alg.to_lowercase(), "alice", claims)
            .await;
        assert_eq!(issued.algorithm, alg);
        let claims = jose_verify(alg, &issued.token).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(claims.subject.as_deref(), Some("alice"), "{alg}");
        assert_eq!(
            claims.jwt_id.as_deref(),
            Some(issued.token_id.as_str()),
            "{alg}"
        );
        assert_eq!(claims.custom["email"], "alice@example.com", "{alg}");
        assert_eq!(claims.custom["n"], 7, "{alg}");
        assert_eq!(
            claims.expires_at.unwrap().as_secs() as i64,
            issued.expires_at.unwrap().seconds
        );
    }
}

#[tokio::test]
async fn tokens_an_independent_jose_library_makes_verify_here_for_every_algorithm() {
    let app = spawn_app().await;
    for alg in ALGORITHMS {
        let kid = format!("{}-key", alg.to_lowercase());
        let token = jose_sign(
            alg,
            claims_for("bob", json!({"role": "admin"}), 120),
            Some(&kid),
        );
        let answer = app.verify(&alg.to_lowercase(), &token).await;
        assert!(
            answer.valid,
            "{alg}: {:?} {}",
            answer.failure(),
            answer.detail
        );
        assert_eq!(answer.algorithm, alg);
        assert_eq!(answer.key_id, kid);
        assert_eq!(answer.subject, "bob");
        assert_eq!(
            from_struct(answer.claims.as_ref().unwrap())["role"],
            "admin"
        );
    }
}

#[tokio::test]
async fn a_verify_only_public_key_checks_a_partners_tokens() {
    let app = spawn_app().await;
    let token = jose_sign(
        "RS256",
        claims_for("partner-user", json!({}), 60),
        Some("rs256-public"),
    );
    let answer = app.verify("partner", &token).await;
    assert!(answer.valid, "{}", answer.detail);
    assert_eq!(answer.key_id, "rs256-public");
}

#[tokio::test]
async fn a_seatable_style_token_without_kid_or_iat_verifies() {
    let app = spawn_app().await;
    // What SeaTable's PHP example makes: HS256, only exp and user_id, no kid.
    let mut claims = jwt_simple::prelude::Claims::with_custom_claims(
        json!({"user_id": "a7b3c@auth.local"})
            .as_object()
            .unwrap()
            .clone(),
        Duration::from_secs(30),
    );
    claims.issued_at = None;
    claims.invalid_before = None;
    let token = jose_sign("HS256", claims, None);
    assert!(!header(&token).contains_key("kid"));
    let answer = app.verify("seatable", &token).await;
    assert!(answer.valid, "{}", answer.detail);
    assert_eq!(answer.subject, "a7b3c@auth.local");
}
