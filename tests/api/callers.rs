//! Caller authentication and policy through the front door: API keys, bearer tokens verified
//! by `[server] caller_profile`, every policy rule, KeyAdmin grants, reload, the start-up
//! refusals, and client certificates over mTLS with the test PKI.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;
use token_authority::proto::key_admin_client::KeyAdminClient;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{
    IssueRequest, JwksRequest, ListKeysRequest, LoginUrlRequest, ReloadRequest, VerifyRequest,
};
use token_authority::state::config::{Config, ConfigSource};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::helpers::{
    TestApp, assert_status, spawn_app_from_file, spawn_app_with, start_connecting, test_config,
    to_struct,
};
use crate::pki::{TestCa, TestPki, client_tls, tls_channel};

pub const BILLING_KEY: &str = "billing-api-key-7f3a9c2e51d04b8e";
pub const MINTER_KEY: &str = "minter-api-key-0c1d2e3f4a5b6c7d";
pub const OPS_KEY: &str = "ops-api-key-8899aabbccddeeff0011";
pub const LIMITED_KEY: &str = "limited-api-key-1234567890abcdef";

/// The hex SHA-256 of `key`, as `printf %s "$KEY" | sha256sum` prints it.
pub fn sha256_hex(key: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The test configuration with KeyAdmin on, a `callers` profile that verifies bearer tokens,
/// and callers for every rule.
pub fn callers_config() -> String {
    test_config().replacen(
        "[server]\n",
        "[server]\nadmin = true\ncaller_profile = \"callers\"\n",
        1,
    ) + &format!(
        r#"
[profiles.callers]
signing_key = "eddsa-key"
issuer = "https://callers.test"
audience = ["token-authority"]

[[callers]]
name = "billing"
api_key_sha256 = "{billing}"
allow = ["Issue:hs256", "LoginUrl:seatable", "Verify:*"]
subjects = "^user-[0-9]+$"
claims = ["role"]
max_ttl = "10m"

[[callers]]
name = "minter"
api_key_sha256 = "{minter}"
allow = ["Issue:callers"]

[[callers]]
name = "reports"
token_subject = "svc-reports"
allow = ["Verify:*"]

[[callers]]
name = "ops"
api_key_sha256 = "{ops}"
allow = ["KeyAdmin/*", "Verify:*"]

[[callers]]
name = "limited"
api_key_sha256 = "{limited}"
allow = ["Issue:hs256"]
rate = "1/h"
burst = 2
"#,
        billing = sha256_hex(BILLING_KEY),
        minter = sha256_hex(MINTER_KEY),
        ops = sha256_hex(OPS_KEY),
        limited = sha256_hex(LIMITED_KEY),
    )
}

pub fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
}

fn with_bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn issue_request(profile: &str, subject: &str) -> IssueRequest {
    IssueRequest {
        profile: profile.into(),
        subject: subject.into(),
        ..Default::default()
    }
}

fn verify_request(token: &str) -> VerifyRequest {
    VerifyRequest {
        token: token.into(),
        profile: "hs256".into(),
        audience: String::new(),
    }
}

fn client(app: &TestApp) -> TokenAuthorityClient<Channel> {
    app.client.clone()
}

/// A token of the `callers` profile for `subject`, minted by the `minter` caller.
async fn caller_token(app: &TestApp, subject: &str) -> String {
    client(app)
        .issue(with_key(issue_request("callers", subject), MINTER_KEY))
        .await
        .unwrap()
        .into_inner()
        .token
}

#[tokio::test]
async fn an_api_key_caller_issues_within_its_policy_and_the_token_verifies() {
    let app = spawn_app_with(&callers_config()).await;
    let mut request = issue_request("hs256", "user-42");
    request.claims = Some(to_struct(json!({"role": "admin"})));
    let issued = client(&app)
        .issue(with_key(request, BILLING_KEY))
        .await
        .unwrap()
        .into_inner();
    let claims = crate::helpers::jose_verify("HS256", &issued.token).unwrap();
    assert_eq!(claims.subject.as_deref(), Some("user-42"));
    let verified = client(&app)
        .verify(with_key(verify_request(&issued.token), BILLING_KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid);
}

#[tokio::test]
async fn without_credentials_a_call_is_unauthenticated_before_any_profile_is_looked_up() {
    let app = spawn_app_with(&callers_config()).await;
    for profile in ["hs256", "no-such-profile"] {
        let status = app.issue_status(issue_request(profile, "user-1")).await;
        assert_status(&status, Code::Unauthenticated, "no credentials");
        assert!(!status.message().contains(profile), "{}", status.message());
    }
    let status = client(&app)
        .jwks(JwksRequest {
            profile: "no-such-profile".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn an_unknown_api_key_is_unauthenticated_and_never_echoed() {
    let app = spawn_app_with(&callers_config()).await;
    let wrong = "billing-api-key-7f3a9c2e51d04b8f";
    let status = client(&app)
        .issue(with_key(issue_request("hs256", "user-1"), wrong))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "unknown API key");
    assert!(!status.message().contains(wrong));
    assert!(
        !crate::helpers::captured_logs().contains(wrong),
        "the key was logged"
    );
}

#[tokio::test]
async fn two_credentials_in_one_call_are_refused_saying_so() {
    let app = spawn_app_with(&callers_config()).await;
    let token = caller_token(&app, "svc-reports").await;
    let mut request = with_key(verify_request(&token), BILLING_KEY);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = client(&app).verify(request).await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, "more than one credential");
    assert!(
        status.message().contains("x-api-key"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains(&token));
}

#[tokio::test]
async fn a_bearer_token_from_the_caller_profile_identifies_its_subject() {
    let app = spawn_app_with(&callers_config()).await;
    let token = caller_token(&app, "svc-reports").await;
    let answer = client(&app)
        .verify(with_bearer(verify_request("not.a.token"), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !answer.valid,
        "the call was answered: the caller is reports"
    );
    // reports may verify but not issue: its policy, not its token, decides.
    let status = client(&app)
        .issue(with_bearer(issue_request("hs256", "user-1"), &token))
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "caller \"reports\"");
}

#[tokio::test]
async fn refused_bearer_tokens_say_why_without_echoing_the_token() {
    let app = spawn_app_with(&callers_config()).await;
    let good = caller_token(&app, "svc-reports").await;
    // Signed by the hs256 profile, not by the caller profile's key.
    let other = client(&app)
        .issue(with_key(issue_request("hs256", "svc-reports"), LIMITED_KEY))
        .await
        .unwrap()
        .into_inner()
        .token;
    let stranger = caller_token(&app, "svc-unknown").await;
    let cases = [
        (other.as_str(), "bearer token refused: unknown_key"),
        ("garbage", "bearer token refused: malformed"),
        (stranger.as_str(), "subject is no configured caller"),
    ];
    for (token, says) in cases {
        let status = client(&app)
            .verify(with_bearer(verify_request("x"), token))
            .await
            .unwrap_err();
        assert_status(&status, Code::Unauthenticated, says);
        assert!(!status.message().contains(token), "{}", status.message());
    }
    let mut basic = Request::new(verify_request("x"));
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let status = client(&app).verify(basic).await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, "must be `Bearer`");

    app.advance(3600).await;
    let status = client(&app)
        .verify(with_bearer(verify_request("x"), &good))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "bearer token refused: expired",
    );
}

async fn denied(app: &TestApp, request: Request<IssueRequest>) -> tonic::Status {
    let status = client(app).issue(request).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
    status
}

#[tokio::test]
async fn each_policy_rule_is_named_when_a_known_caller_breaks_it() {
    let app = spawn_app_with(&callers_config()).await;
    // RPC: billing has no Jwks grant.
    let status = client(&app)
        .jwks(with_key(
            JwksRequest {
                profile: "hs256".into(),
            },
            BILLING_KEY,
        ))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "caller \"billing\" may not call Jwks on profile \"hs256\": no allow entry grants it",
    );
    // Profile: Issue is granted for hs256 only.
    let status = denied(
        &app,
        with_key(issue_request("es256", "user-1"), BILLING_KEY),
    )
    .await;
    assert_eq!(
        status.message(),
        "caller \"billing\" may not call Issue on profile \"es256\": no allow entry grants it"
    );
    // Subject pattern; the subject itself is not repeated.
    let status = denied(&app, with_key(issue_request("hs256", "root"), BILLING_KEY)).await;
    assert_eq!(
        status.message(),
        "caller \"billing\" may not call Issue on profile \"hs256\": the subject does not match its subjects pattern \"^user-[0-9]+$\""
    );
    // Claims list.
    let mut request = issue_request("hs256", "user-1");
    request.claims = Some(to_struct(json!({"role": "x", "groups": ["wheel"]})));
    let status = denied(&app, with_key(request, BILLING_KEY)).await;
    assert!(
        status
            .message()
            .ends_with("claim \"groups\" is not in its claims list"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("wheel"));
    // ttl cap: 10 minutes; the profile would allow an hour.
    let mut request = issue_request("hs256", "user-1");
    request.ttl = Some(prost_types::Duration {
        seconds: 601,
        nanos: 0,
    });
    let status = denied(&app, with_key(request, BILLING_KEY)).await;
    assert!(
        status
            .message()
            .ends_with("ttl 601s is above its max_ttl of 600s"),
        "{}",
        status.message()
    );
    // LoginUrl is bound by the same subject rule.
    let status = client(&app)
        .login_url(with_key(
            LoginUrlRequest {
                profile: "seatable".into(),
                subject: "admin".into(),
                next: "https://cloud.seatable.io/".into(),
                ..Default::default()
            },
            BILLING_KEY,
        ))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "LoginUrl on profile \"seatable\"",
    );
    let link = client(&app)
        .login_url(with_key(
            LoginUrlRequest {
                profile: "seatable".into(),
                subject: "user-9".into(),
                next: "https://cloud.seatable.io/".into(),
                ..Default::default()
            },
            BILLING_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(link.url.starts_with("https://cloud.seatable.io/"));

    let metrics = reqwest::get(format!("{}/metrics", app.http_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"outcome="error",reason="permission_denied""#),
        "denials are counted: {metrics}"
    );
}

#[tokio::test]
async fn a_caller_over_its_rate_is_resource_exhausted() {
    let app = spawn_app_with(&callers_config()).await;
    for _ in 0..2 {
        client(&app)
            .issue(with_key(issue_request("hs256", "u"), LIMITED_KEY))
            .await
            .unwrap();
    }
    let status = client(&app)
        .issue(with_key(issue_request("hs256", "u"), LIMITED_KEY))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::ResourceExhausted,
        "caller \"limited\" is over its rate of 1/h, burst 2",
    );
    // The rate is the caller's own: another caller still issues.
    client(&app)
        .issue(with_key(issue_request("hs256", "user-1"), BILLING_KEY))
        .await
        .unwrap();
}

#[tokio::test]
async fn key_admin_is_denied_to_a_verify_only_caller_and_served_to_an_admin() {
    let app = spawn_app_with(&callers_config()).await;
    let mut admin = KeyAdminClient::new(app.channel.clone());
    let status = admin
        .list_keys(with_key(ListKeysRequest::default(), BILLING_KEY))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "caller \"billing\" may not call KeyAdmin/ListKeys: no allow entry grants it",
    );
    let status = admin
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let listed = admin
        .list_keys(with_key(ListKeysRequest::default(), OPS_KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(!listed.profiles.is_empty());
}

#[tokio::test]
async fn health_reflection_and_the_http_documents_stay_open() {
    use tonic_health::pb::HealthCheckRequest;
    let app = spawn_app_with(&callers_config()).await;
    let health = app
        .health
        .clone()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
    let jwks = reqwest::get(format!("{}/.well-known/jwks.json", app.http_base))
        .await
        .unwrap();
    assert!(jwks.status().is_success());
}

#[tokio::test]
async fn callers_are_reloaded_with_the_configuration() {
    let app = spawn_app_from_file(&callers_config()).await;
    client(&app)
        .issue(with_key(issue_request("hs256", "user-1"), BILLING_KEY))
        .await
        .unwrap();
    let path = app.data_dir.path().join("config.toml");
    let without_billing = callers_config().replace(&sha256_hex(BILLING_KEY), &"ab".repeat(32));
    std::fs::write(&path, without_billing).unwrap();
    KeyAdminClient::new(app.channel.clone())
        .reload(with_key(ReloadRequest {}, OPS_KEY))
        .await
        .unwrap();
    let status = client(&app)
        .issue(with_key(issue_request("hs256", "user-1"), BILLING_KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "unknown API key");
}

// ---- start-up refusals and configuration mistakes -----------------------------------------

fn load(toml: &str) -> anyhow::Result<Config> {
    crate::helpers::test_env();
    let dir = tempfile::tempdir().unwrap();
    for name in ["hs256", "hs384", "hs512"] {
        std::fs::write(dir.path().join(format!("{name}.secret")), [b'k'; 64]).unwrap();
    }
    Config::from_toml(toml, "callers.toml", dir.path())
}

fn refused(toml: &str) -> String {
    format!("{:#}", load(toml).unwrap_err())
}

#[test]
fn a_non_loopback_listen_address_without_callers_is_refused_unless_allowed() {
    let open = test_config().replacen("127.0.0.1:0", "0.0.0.0:50051", 1);
    let message = refused(&open);
    assert!(
        message.starts_with(
            "callers.toml: the service would listen on 0.0.0.0:50051 with no [[callers]] configured"
        ),
        "{message}"
    );
    assert!(
        message.contains("allow_unauthenticated = true"),
        "{message}"
    );
    let allowed = open.replacen("[server]\n", "[server]\nallow_unauthenticated = true\n", 1);
    assert!(load(&allowed).is_ok());
    let with_callers = callers_config().replacen("127.0.0.1:0", "0.0.0.0:50051", 1);
    assert!(load(&with_callers).is_ok());
}

#[test]
fn admin_without_a_caller_allowed_key_admin_is_refused() {
    let config = callers_config().replace("\"KeyAdmin/*\", ", "");
    let message = refused(&config);
    assert!(
        message.starts_with(
            "callers.toml: server.admin = true, but no [[callers]] entry may use KeyAdmin"
        ),
        "{message}"
    );
}

#[test]
fn every_caller_mistake_names_the_file_the_entry_and_the_reason() {
    let base = callers_config();
    let cases = [
        (
            base.replace("\"Issue:callers\"", "\"Sign:callers\""),
            "callers.toml: callers[1] \"minter\": allow entry \"Sign:callers\": unknown RPC \"Sign\"",
        ),
        (
            base.replace("\"Issue:callers\"", "\"Issue:nope\""),
            "callers.toml: callers[1] \"minter\": allow entry \"Issue:nope\" names profile \"nope\", which does not exist",
        ),
        (
            base.replace("^user-[0-9]+$", "^user-[0-9+$"),
            "callers.toml: callers[0] \"billing\": subjects \"^user-[0-9+$\" is not a regular expression",
        ),
        (
            base.replace("name = \"minter\"", "name = \"billing\""),
            "callers.toml: caller \"billing\": the name is used by another caller",
        ),
        (
            base.replace(&sha256_hex(MINTER_KEY), &sha256_hex(BILLING_KEY)),
            "callers.toml: caller \"minter\": api_key_sha256 is also the identity of caller \"billing\"",
        ),
        (
            base.replace("caller_profile = \"callers\"", "caller_profile = \"nope\""),
            "callers.toml: server.caller_profile \"nope\": no such profile",
        ),
        (
            base.replace(&sha256_hex(MINTER_KEY), MINTER_KEY),
            "callers.toml: callers[1] \"minter\": api_key_sha256 must be the 64 hex characters",
        ),
        (
            base.replace(
                "token_subject = \"svc-reports\"",
                "token_subject = \"svc-reports\"\ndns_name = \"r\"",
            ),
            "callers.toml: callers[2] \"reports\": set exactly one of spiffe_id, dns_name, token_subject or api_key_sha256, not dns_name and token_subject",
        ),
        (
            base.replace("rate = \"1/h\"", "rate = \"1 per hour\""),
            "callers.toml: callers[4] \"limited\": rate \"1 per hour\": write calls per second",
        ),
        (
            base.replace("caller_profile = \"callers\"\n", ""),
            "callers.toml: callers[2] \"reports\": token_subject needs [server] caller_profile",
        ),
    ];
    for (config, says) in cases {
        let message = refused(&config);
        assert!(
            message.starts_with(says),
            "{message}\nshould start with\n{says}"
        );
        assert!(
            !message.contains(MINTER_KEY) || says.contains("64 hex"),
            "{message}"
        );
    }
}

// ---- mTLS ------------------------------------------------------------------------------

const BILLING_SPIFFE: &str = "spiffe://example.org/ns/prod/sa/billing";

/// A TLS server with the test CA as client CA and callers by SPIFFE ID and by DNS name.
async fn spawn_mtls_app() -> (TestApp, TestPki) {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let pki = TestPki::new(data_dir.path(), true);
    let config = test_config()
        + &pki.files.toml()
        + &format!(
            r#"
[[callers]]
name = "billing"
spiffe_id = "{BILLING_SPIFFE}"
allow = ["Issue:hs256"]

[[callers]]
name = "ops"
dns_name = "ops.internal"
allow = ["Verify:*"]
"#
        );
    let path = data_dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let billing = pki.ca.client_with_uri(BILLING_SPIFFE);
    let app = start_connecting(
        ConfigSource::File(path),
        data_dir,
        SystemTime::now(),
        Some(client_tls(&pki.ca, Some(&billing))),
    )
    .await;
    (app, pki)
}

async fn issue_over(channel: Channel) -> Result<String, tonic::Status> {
    TokenAuthorityClient::new(channel)
        .issue(issue_request("hs256", "user-1"))
        .await
        .map(|r| r.into_inner().token)
}

#[tokio::test]
async fn a_client_certificate_identifies_its_caller_by_spiffe_id_or_dns_name() {
    let (app, pki) = spawn_mtls_app().await;
    let token = issue_over(app.channel.clone()).await.unwrap();
    assert!(crate::helpers::jose_verify("HS256", &token).is_ok());

    let ops = pki.ca.client_with_dns("ops.internal");
    let channel = tls_channel(app.addr, client_tls(&pki.ca, Some(&ops)))
        .await
        .unwrap();
    let status = issue_over(channel.clone()).await.unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "caller \"ops\" may not call Issue",
    );
    let answer = TokenAuthorityClient::new(channel)
        .verify(verify_request(&token))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.valid);
}

#[tokio::test]
async fn a_missing_foreign_or_expired_client_certificate_is_unauthenticated_with_the_reason() {
    let (app, pki) = spawn_mtls_app().await;
    let other_ca = TestCa::new("some other CA");
    let cases = [
        (None, "no credentials"),
        (
            Some(other_ca.client_with_uri(BILLING_SPIFFE)),
            "client certificate is not issued by the configured client CA",
        ),
        (
            Some(pki.ca.expired_client(BILLING_SPIFFE)),
            "client certificate has expired",
        ),
        (
            Some(
                pki.ca
                    .client_with_uri("spiffe://example.org/ns/prod/sa/stranger"),
            ),
            "the client certificate names no configured caller",
        ),
    ];
    for (identity, says) in cases {
        let channel = tls_channel(app.addr, client_tls(&pki.ca, identity.as_ref()))
            .await
            .unwrap();
        let status = issue_over(channel).await.unwrap_err();
        assert_status(&status, Code::Unauthenticated, says);
    }
}

// ---- the binary refuses, as an operator meets it ------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_token-authority");

#[test]
fn serve_and_config_check_refuse_a_public_address_without_callers_and_say_how_to_fix_it() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env_remove("TOKEN_AUTHORITY_CONFIG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    // The embedded default listens on loopback; --listen moves it to every interface.
    let serve = run(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert!(!serve.status.success());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(
        stderr.contains("would listen on 0.0.0.0:0 with no [[callers]] configured"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_unauthenticated = true"), "{stderr}");
    let config = data.path().join("public.toml");
    let public = "[server]\nlisten = \"0.0.0.0:50051\"\n\n[[keys]]\nid = \"k\"\nalgorithm = \"EdDSA\"\nprivate_key_file = \"k.pem\"\ngenerate = true\n\n[profiles.default]\nsigning_key = \"k\"\n";
    std::fs::write(&config, public).unwrap();
    let check = run(&["config", "check", "--config", config.to_str().unwrap()]);
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("public.toml: the service would listen on 0.0.0.0:50051"),
        "{stderr}"
    );
}

#[test]
fn a_reload_that_drops_every_caller_is_refused_on_a_public_address() {
    use std::io::BufRead as _;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("config.toml");
    let base = "[server]\nhttp_listen = \"off\"\n\n[[keys]]\nid = \"k\"\nalgorithm = \"EdDSA\"\nprivate_key_file = \"k.pem\"\ngenerate = true\n\n[profiles.default]\nsigning_key = \"k\"\n";
    let caller = format!(
        "\n[[callers]]\nname = \"billing\"\napi_key_sha256 = \"{}\"\nallow = [\"Issue:default\"]\n",
        sha256_hex(BILLING_KEY)
    );
    std::fs::write(&config, format!("{base}{caller}")).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "info")
        .env_remove("TOKEN_AUTHORITY_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut until = |texts: &[&str]| {
        lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| texts.iter().any(|t| l.contains(t)))
            .unwrap_or_else(|| panic!("no line with {texts:?}"))
    };
    until(&["listening"]);
    std::fs::write(&config, base).unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let refused = until(&["reload refused", "configuration reloaded"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        refused.contains("would listen on 0.0.0.0:") && refused.contains("no [[callers]]"),
        "{refused}"
    );
}
