//! IssuePair, Refresh, Revoke, revocable and single-use profiles on the embedded store, through
//! the real server; and the store across a `kill -9` of the real binary.

use std::path::Path;
use std::time::Duration;

use jwt_simple::prelude::*;
use serde_json::json;
use token_authority::proto::revoke_request::Target;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{
    IssuePairResponse, IssueRequest, RefreshRequest, RevokeRequest, RevokeResponse, VerifyFailure,
    VerifyRequest,
};
use token_authority::state::config::Config;
use tonic::Code;

use crate::cli::serve;
use crate::helpers::{
    SEATABLE_SECRET, TestApp, assert_status, from_struct, payload, spawn_app_with, test_env,
    to_struct,
};

/// Profiles for the whole flow: an access/refresh pair that rotates with a 10 s grace, one
/// that does not rotate, a single-use login profile and a plain one.
pub fn lifecycle_config(store: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{store}

[[keys]]
id = "hs"
algorithm = "HS256"
secret_file = "hs256.secret"

[profiles.access]
signing_key = "hs"
subject_claim = "user_id"
ttl = "5m"
claims = {{ token_type = "access" }}
revocable = true
[profiles.access.refresh]
profile = "refresh"
rotate = true
reuse_grace = "10s"

[profiles.steady]
signing_key = "hs"
subject_claim = "user_id"
claims = {{ token_type = "access" }}
revocable = true
[profiles.steady.refresh]
profile = "refresh"

[profiles.refresh]
signing_key = "hs"
subject_claim = "user_id"
ttl = "24h"
claims = {{ token_type = "refresh" }}

[profiles.login]
signing_key = "hs"
ttl = "30s"
single_use = true

[profiles.plain]
signing_key = "hs"
"#
    )
}

pub async fn spawn_lifecycle_app() -> TestApp {
    spawn_app_with(&lifecycle_config("")).await
}

pub async fn issue_pair(
    app: &TestApp,
    profile: &str,
    subject: &str,
    claims: serde_json::Value,
) -> IssuePairResponse {
    app.client
        .clone()
        .issue_pair(IssueRequest {
            profile: profile.into(),
            subject: subject.into(),
            claims: Some(to_struct(claims)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

pub async fn refresh(
    app: &TestApp,
    profile: &str,
    token: &str,
) -> Result<IssuePairResponse, tonic::Status> {
    app.client
        .clone()
        .refresh(RefreshRequest {
            profile: profile.into(),
            refresh_token: token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn revoke(
    app: &TestApp,
    profile: &str,
    target: Target,
) -> Result<RevokeResponse, tonic::Status> {
    app.client
        .clone()
        .revoke(RevokeRequest {
            profile: profile.into(),
            target: Some(target),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn access_of(pair: &IssuePairResponse) -> &str {
    &pair.access.as_ref().unwrap().token
}

fn refresh_of(pair: &IssuePairResponse) -> &str {
    &pair.refresh.as_ref().unwrap().token
}

pub async fn failure(app: &TestApp, profile: &str, token: &str) -> VerifyFailure {
    let answer = app.verify(profile, token).await;
    if answer.valid {
        VerifyFailure::Unspecified
    } else {
        answer.failure()
    }
}

#[tokio::test]
async fn issue_pair_signs_an_access_and_a_refresh_token_sharing_a_family_and_the_claims() {
    let app = spawn_lifecycle_app().await;
    let pair = issue_pair(&app, "access", "42", json!({"email": "ada@example.com"})).await;
    let access = payload(access_of(&pair));
    let refresh = payload(refresh_of(&pair));
    assert_eq!(access["token_type"], "access");
    assert_eq!(refresh["token_type"], "refresh");
    for claims in [&access, &refresh] {
        assert_eq!(claims["user_id"], "42");
        assert_eq!(claims["email"], "ada@example.com");
        assert_eq!(claims["fam"], pair.family_id.as_str());
    }
    assert_ne!(access["jti"], refresh["jti"]);
    assert_eq!(
        refresh["exp"].as_u64().unwrap() - refresh["iat"].as_u64().unwrap(),
        24 * 3600
    );
    assert!(app.verify("access", access_of(&pair)).await.valid);
    assert!(app.verify("refresh", refresh_of(&pair)).await.valid);
    assert_eq!(
        failure(&app, "access", refresh_of(&pair)).await,
        VerifyFailure::ClaimMismatch
    );
}

#[tokio::test]
async fn issue_pair_refuses_a_profile_without_refresh_and_a_family_claim_from_the_caller() {
    let app = spawn_lifecycle_app().await;
    let status = app
        .client
        .clone()
        .issue_pair(IssueRequest {
            profile: "plain".into(),
            subject: "42".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "[profiles.plain.refresh]",
    );
    let status = app
        .client
        .clone()
        .issue_pair(IssueRequest {
            profile: "access".into(),
            subject: "42".into(),
            claims: Some(to_struct(json!({"fam": "someone-elses"}))),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "claims.fam");
}

#[tokio::test]
async fn refresh_copies_the_refresh_tokens_claims_to_a_new_access_token_as_simplejwt_does() {
    let app = spawn_lifecycle_app().await;
    let pair = issue_pair(
        &app,
        "access",
        "42",
        json!({"email": "ada@example.com", "role": "admin"}),
    )
    .await;
    app.advance(60).await;
    let renewed = refresh(&app, "access", refresh_of(&pair)).await.unwrap();
    let old = payload(refresh_of(&pair));
    let access = payload(access_of(&renewed));
    for claim in ["user_id", "email", "role", "fam"] {
        assert_eq!(access[claim], old[claim], "{claim}");
    }
    assert_eq!(access["token_type"], "access");
    assert_eq!(access["iat"].as_u64().unwrap(), app.unix_now());
    assert_eq!(access["exp"].as_u64().unwrap(), app.unix_now() + 300);
    assert_ne!(access["jti"], old["jti"]);
    assert_eq!(renewed.family_id, pair.family_id);
    let verified = app.verify("access", access_of(&renewed)).await;
    assert!(verified.valid, "{}", verified.detail);
    assert_eq!(
        from_struct(verified.claims.as_ref().unwrap())["role"],
        "admin"
    );

    // Rotation: a new refresh token in the same family, itself good for the next refresh.
    let next = payload(refresh_of(&renewed));
    assert_eq!(next["fam"], old["fam"]);
    assert_eq!(next["token_type"], "refresh");
    assert_ne!(next["jti"], old["jti"]);
    let again = refresh(&app, "access", refresh_of(&renewed)).await.unwrap();
    assert!(app.verify("access", access_of(&again)).await.valid);
}

#[tokio::test]
async fn without_rotate_refresh_keeps_the_refresh_token_and_returns_only_an_access_token() {
    let app = spawn_lifecycle_app().await;
    let pair = issue_pair(&app, "steady", "42", json!({})).await;
    for _ in 0..3 {
        let renewed = refresh(&app, "steady", refresh_of(&pair)).await.unwrap();
        assert!(renewed.refresh.is_none());
        assert!(app.verify("steady", access_of(&renewed)).await.valid);
    }
}

#[tokio::test]
async fn a_refresh_token_verify_would_refuse_is_unauthenticated_with_the_reason() {
    let app = spawn_lifecycle_app().await;
    let pair = issue_pair(&app, "access", "42", json!({})).await;
    let status = refresh(&app, "access", access_of(&pair)).await.unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "refresh_token: refused (claim_mismatch)",
    );
    let status = refresh(&app, "access", "not.a.token").await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, "refused (malformed)");
    let status = refresh(&app, "access", "").await.unwrap_err();
    assert_status(
        &status,
        Code::InvalidArgument,
        "refresh_token: must not be empty",
    );
    let status = refresh(&app, "plain", refresh_of(&pair)).await.unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "no refresh block");
    app.advance(24 * 3600 + 1).await;
    let status = refresh(&app, "access", refresh_of(&pair))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "refresh_token: refused (expired)",
    );
}

/// A Refresh call that owns what it needs, to run on its own task.
pub fn refresh_call(
    client: &TokenAuthorityClient<tonic::transport::Channel>,
    profile: &str,
    token: &str,
) -> impl std::future::Future<Output = Result<IssuePairResponse, tonic::Status>> + Send + 'static {
    let mut client = client.clone();
    let request = RefreshRequest {
        profile: profile.into(),
        refresh_token: token.into(),
    };
    async move {
        client
            .refresh(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_racing_one_refresh_token_within_the_grace_get_the_same_answer() {
    let app = spawn_lifecycle_app().await;
    let pair = issue_pair(&app, "access", "42", json!({})).await;
    let token = refresh_of(&pair).to_owned();
    let calls = (0..8).map(|_| refresh_call(&app.client, "access", &token));
    let answers: Vec<IssuePairResponse> = futures_join(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for answer in &answers {
        assert_eq!(access_of(answer), access_of(&answers[0]));
        assert_eq!(refresh_of(answer), refresh_of(&answers[0]));
    }
    // A client that lost its answer asks again within the grace and gets it once more.
    app.advance(9).await;
    let late = refresh(&app, "access", &token).await.unwrap();
    assert_eq!(refresh_of(&late), refresh_of(&answers[0]));
    assert!(app.verify("access", access_of(&late)).await.valid);
}

#[tokio::test]
async fn a_spent_refresh_token_seen_after_the_grace_revokes_its_whole_family() {
    let app = spawn_lifecycle_app().await;
    let pair = issue_pair(&app, "access", "42", json!({})).await;
    let other_login = issue_pair(&app, "access", "42", json!({})).await;
    let renewed = refresh(&app, "access", refresh_of(&pair)).await.unwrap();
    app.advance(10).await;

    let status = refresh(&app, "access", refresh_of(&pair))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "refused (revoked)");
    assert!(
        status.message().contains("whole family"),
        "{}",
        status.message()
    );
    for token in [access_of(&pair), access_of(&renewed)] {
        assert_eq!(failure(&app, "access", token).await, VerifyFailure::Revoked);
    }
    assert_eq!(
        failure(&app, "refresh", refresh_of(&renewed)).await,
        VerifyFailure::Revoked
    );
    let status = refresh(&app, "access", refresh_of(&renewed))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "refused (revoked)");
    // Another login of the same user is another family.
    assert!(app.verify("access", access_of(&other_login)).await.valid);
    assert!(
        refresh(&app, "access", refresh_of(&other_login))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn revoke_by_token_id_stops_that_token_only_and_can_be_repeated() {
    let app = spawn_lifecycle_app().await;
    let one = issue_pair(&app, "access", "42", json!({})).await;
    let two = issue_pair(&app, "access", "42", json!({})).await;
    let id = one.access.as_ref().unwrap().token_id.clone();
    for _ in 0..2 {
        let answer = revoke(&app, "access", Target::TokenId(id.clone()))
            .await
            .unwrap();
        assert_eq!(answer.token_id, id);
        // Kept as long as any access token can live: max_ttl (5m) after now.
        assert_eq!(
            answer.remembered_until.unwrap().seconds as u64,
            app.unix_now() + 300
        );
    }
    let refused = app.verify("access", access_of(&one)).await;
    assert_eq!(refused.failure(), VerifyFailure::Revoked);
    assert_eq!(refused.detail, "the token was revoked");
    assert!(app.verify("access", access_of(&two)).await.valid);
    assert!(app.verify("refresh", refresh_of(&one)).await.valid);
}

#[tokio::test]
async fn revoke_by_subject_stops_every_token_issued_up_to_now_and_none_after() {
    let app = spawn_lifecycle_app().await;
    let first = issue_pair(&app, "access", "7", json!({})).await;
    app.advance(5).await;
    let second = issue_pair(&app, "access", "7", json!({})).await;
    let other = issue_pair(&app, "access", "8", json!({})).await;
    let answer = revoke(&app, "access", Target::Subject("7".into()))
        .await
        .unwrap();
    assert_eq!(
        answer.revoked_before.unwrap().seconds as u64,
        app.unix_now()
    );
    for token in [access_of(&first), access_of(&second)] {
        assert_eq!(failure(&app, "access", token).await, VerifyFailure::Revoked);
    }
    assert!(app.verify("access", access_of(&other)).await.valid);
    // Revoking the subject under "access" leaves its refresh tokens to their own profile.
    assert!(app.verify("refresh", refresh_of(&first)).await.valid);
    app.advance(1).await;
    let later = issue_pair(&app, "access", "7", json!({})).await;
    assert!(app.verify("access", access_of(&later)).await.valid);
}

#[tokio::test]
async fn revoke_by_token_verifies_it_first_and_a_refresh_token_logs_the_whole_login_out() {
    let app = spawn_lifecycle_app().await;
    let pair = issue_pair(&app, "access", "42", json!({})).await;
    let forged = format!("{}x", access_of(&pair));
    let status = revoke(&app, "access", Target::Token(forged))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "token: refused (");
    assert!(app.verify("access", access_of(&pair)).await.valid);

    let answer = revoke(&app, "refresh", Target::Token(refresh_of(&pair).into()))
        .await
        .unwrap();
    assert_eq!(answer.family_id, pair.family_id);
    assert_eq!(answer.token_id, pair.refresh.as_ref().unwrap().token_id);
    assert_eq!(
        failure(&app, "access", access_of(&pair)).await,
        VerifyFailure::Revoked
    );
    let status = refresh(&app, "access", refresh_of(&pair))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "refused (revoked)");
    // Revoking again is not an error.
    revoke(&app, "refresh", Target::Token(refresh_of(&pair).into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoke_names_what_is_wrong_with_the_request() {
    let app = spawn_lifecycle_app().await;
    let status = revoke(&app, "plain", Target::TokenId("x".into()))
        .await
        .unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "set revocable = true");
    let status = app
        .client
        .clone()
        .revoke(RevokeRequest {
            profile: "access".into(),
            target: None,
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::InvalidArgument,
        "target: give one of token, token_id or subject",
    );
    let status = revoke(&app, "access", Target::Subject(String::new()))
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "subject: must not be empty");
    let status = revoke(&app, "nope", Target::Subject("7".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_use_token_is_accepted_by_exactly_one_of_many_concurrent_verifies() {
    let app = spawn_lifecycle_app().await;
    let login = app.issue("login", "42").await;
    let calls = (0..16).map(|_| {
        let mut client = app.client.clone();
        let token = login.token.clone();
        async move {
            client
                .verify(VerifyRequest {
                    token,
                    profile: "login".into(),
                    audience: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = futures_join(calls).await;
    assert_eq!(answers.iter().filter(|a| a.valid).count(), 1);
    for refused in answers.iter().filter(|a| !a.valid) {
        assert_eq!(refused.failure(), VerifyFailure::AlreadyUsed);
    }
    // A plain profile's token verifies as often as asked.
    let plain = app.issue("plain", "42").await;
    for _ in 0..3 {
        assert!(app.verify("plain", &plain.token).await.valid);
    }
}

#[tokio::test]
async fn a_refused_single_use_token_is_not_consumed() {
    let app = spawn_lifecycle_app().await;
    let login = app.issue("login", "42").await;
    let wrong_audience = app.verify_for("login", &login.token, "elsewhere").await;
    assert!(!wrong_audience.valid);
    assert!(app.verify("login", &login.token).await.valid);
    assert_eq!(
        failure(&app, "login", &login.token).await,
        VerifyFailure::AlreadyUsed
    );
}

#[tokio::test]
async fn the_store_reports_its_health_as_serving() {
    use tonic_health::pb::HealthCheckRequest;
    let app = spawn_lifecycle_app().await;
    let mut health = app.health.clone();
    let status = loop {
        match health
            .check(HealthCheckRequest {
                service: "tokenauthority.v1.Store".into(),
            })
            .await
        {
            Ok(answer) => break answer.into_inner().status,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(status, 1, "SERVING");
}

#[test]
fn lifecycle_settings_that_cannot_work_fail_start_up_naming_the_file_and_the_key() {
    let cases = [
        (
            "profile = \"refresh\"",
            "profile = \"nope\"",
            "refresh.profile \"nope\": is not a configured profile",
        ),
        (
            "profile = \"refresh\"",
            "profile = \"access\"",
            "a profile cannot refresh itself",
        ),
        (
            "reuse_grace = \"10s\"",
            "reuse_grace = \"1.5s\"",
            "refresh.reuse_grace must be whole seconds",
        ),
        (
            "rotate = true\n",
            "rotate = false\n",
            "reuse_grace applies only with refresh.rotate = true",
        ),
        (
            "ttl = \"30s\"\nsingle_use = true",
            "ttl = \"30s\"\nsingle_use = maybe",
            "single_use",
        ),
        (
            "[profiles.refresh]\n",
            "[profiles.refresh]\nsingle_use = true\n",
            "a refresh profile cannot be single_use",
        ),
    ];
    for (from, to, message) in cases {
        let toml = lifecycle_config("").replacen(from, to, 1);
        assert_ne!(toml, lifecycle_config(""), "{from}");
        let e = start_up_error(&toml);
        assert!(e.contains("lifecycle.toml"), "{e}");
        assert!(e.contains(message), "{message:?} not in {e}");
    }
    for (store, message) in [
        (
            "[store]\nbackend = \"memcached\"",
            "store.backend \"memcached\" is not a store",
        ),
        (
            "[store]\nbackend = \"redis\"",
            "store.url is required with backend = \"redis\"",
        ),
        (
            "[store]\nbackend = \"redis\"\nurl = \"http://x\"",
            "store.url",
        ),
        (
            "[store]\nurl = \"redis://127.0.0.1/\"",
            "store.url applies only to backend = \"redis\"",
        ),
        (
            "[store]\nbackend = \"embedded\"\nsize = 3",
            "unknown field `size`",
        ),
    ] {
        let e = start_up_error(&lifecycle_config(store));
        assert!(e.contains(message), "{message:?} not in {e}");
    }
}

fn start_up_error(toml: &str) -> String {
    test_env();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hs256.secret"),
        crate::helpers::HS256_SECRET,
    )
    .unwrap();
    match Config::from_toml(toml, "lifecycle.toml", dir.path()) {
        Ok(_) => panic!("config was accepted:\n{toml}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn the_simplejwt_example_accepts_access_tokens_that_came_from_refresh() {
    test_env();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/simplejwt.toml");
    let app = spawn_app_with(&std::fs::read_to_string(path).unwrap()).await;
    let pair = issue_pair(&app, "access", "42", json!({})).await;
    let renewed = refresh(&app, "access", refresh_of(&pair)).await.unwrap();
    // What simplejwt's JWTAuthentication does: HS256 under SIGNING_KEY, then token_type,
    // then the user id claim.
    let key = HS256Key::from_bytes(SEATABLE_SECRET.as_bytes());
    let options = VerificationOptions {
        time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(3600)),
        ..Default::default()
    };
    let claims = key
        .verify_token::<serde_json::Map<String, serde_json::Value>>(
            access_of(&renewed),
            Some(options),
        )
        .unwrap();
    assert_eq!(claims.custom["token_type"], "access");
    assert_eq!(claims.custom["user_id"], "42");
    assert!(claims.jwt_id.is_some() && claims.issued_at.is_some() && claims.expires_at.is_some());
    assert!(app.verify("access", access_of(&renewed)).await.valid);
    // A logout (revoking the refresh token) stops the access tokens it made.
    revoke(&app, "refresh", Target::Token(refresh_of(&renewed).into()))
        .await
        .unwrap();
    assert_eq!(
        failure(&app, "access", access_of(&renewed)).await,
        VerifyFailure::Revoked
    );
}

// ---- the real binary across kill -9 (cli::serve: killed with SIGKILL when dropped) ------

#[tokio::test]
async fn the_embedded_store_keeps_every_acknowledged_write_across_kill_9() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("hs256.secret"),
        crate::helpers::HS256_SECRET,
    )
    .unwrap();
    let config = data.path().join("config.toml");
    std::fs::write(&config, lifecycle_config("")).unwrap();

    let server = serve(&config, data.path());
    let mut client = TokenAuthorityClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let pair = client
        .issue_pair(IssueRequest {
            profile: "access".into(),
            subject: "42".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let revoked_id = pair.access.as_ref().unwrap().token_id.clone();
    client
        .revoke(RevokeRequest {
            profile: "access".into(),
            target: Some(Target::TokenId(revoked_id)),
        })
        .await
        .unwrap();
    let login = client
        .issue(IssueRequest {
            profile: "login".into(),
            subject: "42".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let verify = |profile: &str, token: &str| VerifyRequest {
        token: token.into(),
        profile: profile.into(),
        audience: String::new(),
    };
    assert!(
        client
            .verify(verify("login", &login.token))
            .await
            .unwrap()
            .into_inner()
            .valid
    );
    let renewed = client
        .refresh(RefreshRequest {
            profile: "access".into(),
            refresh_token: refresh_of(&pair).into(),
        })
        .await
        .unwrap()
        .into_inner();
    drop(server); // SIGKILL: no shutdown, no flush beyond what each commit already did.

    let server = serve(&config, data.path());
    let mut client = TokenAuthorityClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let answer = client
        .verify(verify("access", access_of(&pair)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.failure(), VerifyFailure::Revoked);
    let answer = client
        .verify(verify("login", &login.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.failure(), VerifyFailure::AlreadyUsed);
    // The spend survived too: within the grace the same answer comes back.
    let again = client
        .refresh(RefreshRequest {
            profile: "access".into(),
            refresh_token: refresh_of(&pair).into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refresh_of(&again), refresh_of(&renewed));
}

/// Runs every future at once and collects their answers in order.
pub async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn store_entries_are_forgotten_once_every_token_they_guard_has_expired() {
    use std::sync::Arc;
    use token_authority::core::clock::{Clock as _, ManualClock};
    use token_authority::core::lifecycle::Lookup;
    use token_authority::state::config::StoreSettings;
    use token_authority::state::store::Store;

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(std::time::SystemTime::now()));
    let settings = StoreSettings::Embedded {
        path: dir.path().join("tokens.redb"),
    };
    let store = Store::open(Some(&settings), clock.clone()).unwrap();
    let now = clock.unix_seconds();
    let lookup = Lookup {
        token_id: Some("jti-1"),
        subject: "42",
        family: None,
    };
    store
        .revoke_token("access", "jti-1", now + 10)
        .await
        .unwrap();
    store
        .revoke_subject("access", "42", now, now + 20)
        .await
        .unwrap();
    let facts = store.facts("access", lookup).await.unwrap();
    assert!(facts.token_revoked);
    assert_eq!(facts.subject_revoked_before, Some(now));

    // Past its time an entry counts as gone even before the sweep deletes it.
    clock.advance(Duration::from_secs(11));
    let facts = store.facts("access", lookup).await.unwrap();
    assert!(!facts.token_revoked);
    assert_eq!(facts.subject_revoked_before, Some(now));
    assert_eq!(store.sweep().await.unwrap(), 1);
    clock.advance(Duration::from_secs(10));
    assert_eq!(store.sweep().await.unwrap(), 1);
    assert_eq!(store.sweep().await.unwrap(), 0);
    assert_eq!(
        store.facts("access", lookup).await.unwrap(),
        Default::default()
    );

    // What was swept stays swept after a restart.
    drop(store);
    let store = Store::open(Some(&settings), clock.clone()).unwrap();
    assert_eq!(
        store.facts("access", lookup).await.unwrap(),
        Default::default()
    );
    assert_eq!(store.sweep().await.unwrap(), 0);
}

#[tokio::test]
async fn callers_need_a_grant_for_issue_pair_refresh_and_revoke_and_each_is_audited() {
    use crate::callers::{sha256_hex, with_key};
    const APP_KEY: &str = "lifecycle-app-key-5e6f7a8b9c0d1e2f";
    const READER_KEY: &str = "lifecycle-reader-key-00112233aabb";
    let config = lifecycle_config("")
        + &format!(
            r#"
[[callers]]
name = "app"
api_key_sha256 = "{app}"
allow = ["IssuePair:access", "Refresh:access", "Revoke:access", "Verify:*"]
subjects = "^user-[0-9]+$"

[[callers]]
name = "reader"
api_key_sha256 = "{reader}"
allow = ["Verify:*"]
"#,
            app = sha256_hex(APP_KEY),
            reader = sha256_hex(READER_KEY),
        );
    let app = spawn_app_with(&config).await;
    let mut client = app.client.clone();
    let pair_request = |subject: &str| IssueRequest {
        profile: "access".into(),
        subject: subject.into(),
        ..Default::default()
    };

    // No credentials: refused before anything is looked up.
    let status = client.issue_pair(pair_request("user-1")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());

    // A caller allowed only Verify may not mint, refresh or revoke.
    let status = client
        .issue_pair(with_key(pair_request("user-1"), READER_KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "reader");
    assert_status(&status, Code::PermissionDenied, "IssuePair");

    // The app caller may, within its subject rule.
    let status = client
        .issue_pair(with_key(pair_request("admin"), APP_KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "subject");
    let pair = client
        .issue_pair(with_key(pair_request("user-7"), APP_KEY))
        .await
        .unwrap()
        .into_inner();
    let refresh_token = pair.refresh.as_ref().unwrap().token.clone();

    let refresh_call = |key: &str| {
        with_key(
            RefreshRequest {
                profile: "access".into(),
                refresh_token: refresh_token.clone(),
            },
            key,
        )
    };
    let status = client.refresh(refresh_call(READER_KEY)).await.unwrap_err();
    assert_status(&status, Code::PermissionDenied, "Refresh");
    let renewed = client
        .refresh(refresh_call(APP_KEY))
        .await
        .unwrap()
        .into_inner();
    let access = renewed.access.as_ref().unwrap();

    let revoke_call = |key: &str| {
        with_key(
            RevokeRequest {
                profile: "access".into(),
                target: Some(Target::TokenId(access.token_id.clone())),
            },
            key,
        )
    };
    let status = client.revoke(revoke_call(READER_KEY)).await.unwrap_err();
    assert_status(&status, Code::PermissionDenied, "Revoke");
    client.revoke(revoke_call(APP_KEY)).await.unwrap();
    let verified = client
        .verify(with_key(
            VerifyRequest {
                token: access.token.clone(),
                profile: "access".into(),
                audience: String::new(),
            },
            READER_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.failure(), VerifyFailure::Revoked);

    // One audit record per lifecycle call, with the caller, and never a token.
    let logs = crate::helpers::captured_logs();
    for (rpc, outcome) in [
        ("IssuePair", "issued"),
        ("Refresh", "issued"),
        ("Revoke", "revoked"),
    ] {
        assert!(
            logs.lines().any(|l| l.contains(" audit: ")
                && l.contains(&format!("rpc={rpc}"))
                && l.contains("caller=\"app\"")
                && l.contains(&format!("outcome=\"{outcome}\""))),
            "no audit record of {rpc} by app in:\n{logs}"
        );
    }
    assert!(!logs.contains(&refresh_token));
    assert!(!logs.contains(&access.token));
}
