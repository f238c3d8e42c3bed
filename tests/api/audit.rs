//! The audit trail: one event per Issue, LoginUrl and admin change and per refused call, on
//! the `audit` target, as JSON lines from the real binary; subjects as an HMAC under the
//! deployment's audit key; never a token, an API key or a claim value.

use serde_json::{Value, json};
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{JwksRequest, VerifyRequest};

use crate::callers::{BILLING_KEY, callers_config, issue_request, sha256_hex, with_key};
use crate::helpers::{captured_logs, spawn_app, spawn_app_with, to_struct};

/// The HMAC-SHA256 of `subject` under the audit key in `data_dir`, as an operator computes it
/// (`openssl dgst -sha256 -mac HMAC -macopt hexkey:$(cat audit.key)`).
fn audit_hash(data_dir: &std::path::Path, subject: &str) -> String {
    let text = std::fs::read_to_string(data_dir.join("audit.key")).unwrap();
    let text = text.trim();
    let key: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    ring::hmac::sign(&key, subject.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn audit_lines(logs: &str) -> Vec<&str> {
    logs.lines().filter(|l| l.contains(" audit: ")).collect()
}

#[tokio::test]
async fn an_issue_is_audited_with_caller_jti_kid_ttl_and_an_hmac_of_the_subject() {
    let app = spawn_app_with(&callers_config()).await;
    let mut request = issue_request("hs256", "user-8675309");
    request.claims = Some(to_struct(json!({"role": "claim-value-never-logged"})));
    let issued = app
        .client
        .clone()
        .issue(with_key(request, BILLING_KEY))
        .await
        .unwrap()
        .into_inner();
    let logs = captured_logs();
    let line = audit_lines(&logs)
        .into_iter()
        .find(|l| l.contains(&format!("jti=\"{}\"", issued.token_id)))
        .expect("the Issue call has an audit event");
    let digest_start = &sha256_hex(BILLING_KEY)[..12];
    for field in [
        "caller=\"billing\"".to_owned(),
        format!("identity=\"api-key:sha256:{digest_start}\""),
        "rpc=Issue".to_owned(),
        "profile=\"hs256\"".to_owned(),
        "outcome=\"issued\"".to_owned(),
        "kid=\"hs256-key\"".to_owned(),
        "ttl_s=300".to_owned(),
        format!(
            "subject_hmac=\"{}\"",
            audit_hash(app.data_dir.path(), "user-8675309")
        ),
    ] {
        assert!(line.contains(&field), "{field} missing from {line}");
    }
    for secret in [
        "user-8675309",
        "claim-value-never-logged",
        BILLING_KEY,
        issued.token.as_str(),
    ] {
        assert!(!logs.contains(secret), "{secret} reached the log");
    }
}

#[tokio::test]
async fn unauthenticated_and_denied_calls_are_audited_whichever_rpc_they_were() {
    let app = spawn_app_with(&callers_config()).await;
    let mut client = app.client.clone();
    let verify = VerifyRequest {
        token: "x".into(),
        profile: "audit-probe-unauthenticated".into(),
        audience: String::new(),
    };
    client
        .verify(with_key(verify, "not-a-configured-key-0123456789"))
        .await
        .unwrap_err();
    let jwks = JwksRequest {
        profile: "audit-probe-denied".into(),
    };
    client.jwks(with_key(jwks, BILLING_KEY)).await.unwrap_err();
    let logs = captured_logs();
    let lines = audit_lines(&logs);
    let unauthenticated = lines
        .iter()
        .find(|l| l.contains("profile=\"audit-probe-unauthenticated\""))
        .expect("the unauthenticated Verify is audited");
    for field in [
        "caller=\"(unauthenticated)\"",
        "rpc=Verify",
        "outcome=\"unauthenticated\"",
        "reason=\"unknown_api_key\"",
    ] {
        assert!(
            unauthenticated.contains(field),
            "{field} missing from {unauthenticated}"
        );
    }
    let denied = lines
        .iter()
        .find(|l| l.contains("profile=\"audit-probe-denied\""))
        .expect("the denied Jwks is audited");
    for field in [
        "caller=\"billing\"",
        "rpc=Jwks",
        "outcome=\"denied\"",
        "rule=\"allow\"",
    ] {
        assert!(denied.contains(field), "{field} missing from {denied}");
    }
    assert!(!logs.contains("not-a-configured-key-0123456789"));
}

#[tokio::test]
async fn without_callers_an_issue_is_still_audited_as_anonymous() {
    let app = spawn_app().await;
    let issued = app.issue("hs256", "anonymous-audit-subject").await;
    let logs = captured_logs();
    let line = audit_lines(&logs)
        .into_iter()
        .find(|l| l.contains(&issued.token_id))
        .expect("the Issue call has an audit event");
    assert!(line.contains("caller=\"(anonymous)\""), "{line}");
    assert!(line.contains("subject_hmac="), "{line}");
    assert!(!logs.contains("anonymous-audit-subject"));
}

// ---- the binary: JSON lines on stdout, routable by target ---------------------------------

/// Runs `serve` on `config` (text logs), makes one Issue with `key`, and returns every stdout
/// line up to the Issue's audit event, and the answer.
async fn serve_and_issue(config: &str, key: &str, subject: &str) -> (Vec<String>, String) {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let server = crate::cli::serve(&path, data.path());
    let mut seen = server.started_log.clone();
    let mut client = TokenAuthorityClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let token = client
        .issue(with_key(issue_request("default", subject), key))
        .await
        .unwrap()
        .into_inner()
        .token;
    loop {
        let line = server.next_line();
        seen.push(line.clone());
        if line.contains("\"target\":\"audit\"") {
            break;
        }
    }
    (seen, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_has_its_log_line_and_audit_event_written_by_the_time_the_binary_exits() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("config.toml");
    std::fs::write(&path, binary_config("")).unwrap();
    let server = crate::cli::serve(&path, data.path());
    let client = TokenAuthorityClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    // Many calls at once, so the service's threads batch their lines.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300 {
        let mut client = client.clone();
        calls.spawn(async move {
            let request = with_key(issue_request("default", &format!("user-{i}")), BILLING_KEY);
            client.issue(request).await.unwrap().into_inner().token_id
        });
    }
    let ids = calls.join_all().await;
    let lines = server.terminate();
    for id in &ids {
        let with_id = |l: &&String| l.contains(id.as_str());
        let call = lines
            .iter()
            .filter(|l| l.contains("call finished"))
            .filter(with_id);
        let audit = lines
            .iter()
            .filter(|l| l.contains("\"target\":\"audit\""))
            .filter(with_id);
        assert_eq!((call.count(), audit.count()), (1, 1), "jti {id}");
    }
    assert!(lines.last().unwrap().contains("stopped"), "{lines:?}");
}

fn binary_config(extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
http_listen = "off"

[[keys]]
id = "k"
algorithm = "HS256"
secret_file = "k.secret"
generate = true

[profiles.default]
signing_key = "k"
ttl = "2m"

[[callers]]
name = "reports"
api_key_sha256 = "{}"
allow = ["Issue:default"]
{extra}"#,
        sha256_hex(BILLING_KEY)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_writes_audit_events_as_json_lines_beside_a_text_log() {
    let (lines, token) = serve_and_issue(&binary_config(""), BILLING_KEY, "user-31337").await;
    let event: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(event["target"], "audit");
    assert_eq!(event["level"], "INFO");
    assert!(event["timestamp"].is_string(), "{event}");
    assert_eq!(event["caller"], "reports");
    assert_eq!(event["rpc"], "Issue");
    assert_eq!(event["profile"], "default");
    assert_eq!(event["outcome"], "issued");
    assert_eq!(event["kid"], "k");
    assert_eq!(event["ttl_s"], 120);
    assert_eq!(
        event["jti"].as_str().unwrap(),
        crate::helpers::payload(&token)["jti"].as_str().unwrap()
    );
    assert_eq!(event["subject_hmac"].as_str().unwrap().len(), 64);
    assert!(event.get("subject").is_none(), "{event}");
    assert!(
        event.get("span").is_none(),
        "audit events carry no span fields: {event}"
    );
    let all = lines.join("\n");
    for secret in ["user-31337", BILLING_KEY, token.as_str()] {
        assert!(!all.contains(secret), "{secret} reached stdout");
    }
    // The service log itself stays text.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("listening") && !l.starts_with('{'))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_subjects_plain_writes_the_subject_as_asked() {
    let config = binary_config("\n[audit]\nsubjects = \"plain\"\n");
    let (lines, _) = serve_and_issue(&config, BILLING_KEY, "user-31338").await;
    let event: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(event["subject"], "user-31338");
    assert!(event.get("subject_hmac").is_none(), "{event}");
}

#[tokio::test]
async fn the_audit_key_is_generated_once_private_and_kept_across_restarts() {
    use std::os::unix::fs::PermissionsExt as _;
    let data_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let first = crate::helpers::spawn_app_in(&callers_config(), data_dir.clone()).await;
    let path = data_dir.path().join("audit.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.trim().len(), 64, "32 bytes as hex");
    drop(first);
    let _second = crate::helpers::spawn_app_in(&callers_config(), data_dir.clone()).await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        key,
        "the key is reused"
    );
}

#[test]
fn a_configured_audit_key_file_must_exist_and_be_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str| {
        format!(
            "[[keys]]\nid = \"k\"\nalgorithm = \"EdDSA\"\nprivate_key_file = \"k.pem\"\ngenerate = true\n\n[profiles.default]\nsigning_key = \"k\"\n\n[audit]\n{extra}"
        )
    };
    let load = |extra: &str| {
        token_authority::state::config::Config::check(
            token_authority::state::config::ConfigSource::text(&config(extra), "audit.toml"),
            dir.path(),
        )
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
    };
    let missing = load("key_file = \"keys/audit.key\"\n").unwrap_err();
    assert!(
        missing.starts_with("audit.toml: audit.key_file ")
            && missing.contains("keys/audit.key: cannot read it"),
        "{missing}"
    );
    std::fs::write(dir.path().join("short.key"), "00112233").unwrap();
    let short = load("key_file = \"short.key\"\n").unwrap_err();
    assert!(
        short.ends_with("the key must be at least 32 bytes"),
        "{short}"
    );
    std::fs::write(dir.path().join("bad.key"), "not hex").unwrap();
    let bad = load("key_file = \"bad.key\"\n").unwrap_err();
    assert!(bad.ends_with("must hold the key as hex text"), "{bad}");
    assert!(load("subjects = \"plain\"\n").is_ok());
    assert!(
        !dir.path().join("audit.key").exists(),
        "config check writes nothing"
    );
    assert!(load("").is_ok());
    assert!(
        !dir.path().join("audit.key").exists(),
        "config check writes nothing"
    );
}
