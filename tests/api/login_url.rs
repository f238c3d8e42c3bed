use std::time::Duration;

use serde_json::json;
use token_authority::proto::{LoginUrlRequest, LoginUrlResponse};
use tonic::Code;

use crate::helpers::*;

fn request(next: &str) -> LoginUrlRequest {
    LoginUrlRequest {
        profile: "seatable".into(),
        subject: "a7b3c@auth.local".into(),
        next: next.into(),
        ..Default::default()
    }
}

async fn login(app: &TestApp, req: LoginUrlRequest) -> Result<LoginUrlResponse, tonic::Status> {
    app.client
        .clone()
        .login_url(req)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn login_url_wraps_a_30_second_token_in_the_profile_template() {
    let app = spawn_app().await;
    let link = login(&app, request("/workspace/1/?view=grid&x=1"))
        .await
        .unwrap();

    let url = url::Url::parse(&link.url).unwrap();
    assert_eq!(
        url.origin().ascii_serialization(),
        "https://cloud.seatable.io"
    );
    assert_eq!(url.path(), "/sso-auto-login/");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["token"], link.token);
    assert_eq!(
        query["next"], "/workspace/1/?view=grid&x=1",
        "next is percent-encoded as one value"
    );
    assert!(
        link.url
            .contains("next=%2Fworkspace%2F1%2F%3Fview%3Dgrid%26x%3D1"),
        "{}",
        link.url
    );

    // The token is what SeaTable checks: HS256 over its secret, exp and user_id.
    let claims = jose_verify("HS256", &link.token).unwrap();
    assert_eq!(claims.custom["user_id"], "a7b3c@auth.local");
    let lifetime = claims.expires_at.unwrap().as_secs() - claims.issued_at.unwrap().as_secs();
    assert_eq!(lifetime, 30);
    assert_eq!(claims.jwt_id.as_deref(), Some(link.token_id.as_str()));
    assert_eq!(
        link.expires_at.unwrap().seconds as u64,
        claims.expires_at.unwrap().as_secs()
    );

    let answer = app.verify("seatable", &link.token).await;
    assert!(answer.valid, "{}", answer.detail);
    app.clock.advance(Duration::from_secs(30));
    assert!(
        !app.verify("seatable", &link.token).await.valid,
        "a login link dies after 30 s"
    );
}

#[tokio::test]
async fn login_url_accepts_allowed_absolute_next_and_an_empty_next() {
    let app = spawn_app().await;
    let link = login(&app, request("https://cloud.seatable.io/dtable/42"))
        .await
        .unwrap();
    assert!(
        link.url
            .ends_with("&next=https%3A%2F%2Fcloud.seatable.io%2Fdtable%2F42"),
        "{}",
        link.url
    );
    let link = login(&app, request("")).await.unwrap();
    assert!(link.url.ends_with("&next="), "{}", link.url);
}

#[tokio::test]
async fn login_url_refuses_a_next_that_would_be_an_open_redirect() {
    let app = spawn_app().await;
    for next in [
        "//evil.test/",
        "/\\evil.test",
        "https://evil.test/",
        "https://cloud.seatable.io.evil.test/",
        "https://cloud.seatable.io@evil.test/",
        "http://cloud.seatable.io/",
        "javascript:alert(1)",
        "evil.test",
        "/\t/evil.test",
    ] {
        let status = login(&app, request(next)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{next:?}");
        assert!(
            status.message().starts_with("next:"),
            "{next:?}: {}",
            status.message()
        );
    }
}

#[tokio::test]
async fn login_url_on_a_profile_without_a_template_is_a_failed_precondition() {
    let app = spawn_app().await;
    let mut req = request("/");
    req.profile = "hs256".into();
    let status = login(&app, req).await.unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "login_url");

    let mut req = request("/");
    req.profile = "nope".into();
    assert_eq!(login(&app, req).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn login_url_checks_ttl_subject_and_claims_like_issue() {
    let app = spawn_app().await;
    let mut req = request("/");
    req.ttl = Some(prost_types::Duration {
        seconds: 10,
        nanos: 0,
    });
    let link = login(&app, req).await.unwrap();
    let claims = payload(&link.token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        10
    );

    let mut req = request("/");
    req.ttl = Some(prost_types::Duration {
        seconds: 61,
        nanos: 0,
    });
    let status = login(&app, req).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, "ttl");

    let mut req = request("/");
    req.subject.clear();
    assert_eq!(
        login(&app, req).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let mut req = request("/");
    req.claims = Some(to_struct(json!({"exp": 1})));
    let status = login(&app, req).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, "claims.exp");
}
