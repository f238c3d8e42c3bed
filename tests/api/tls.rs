//! TLS on both listeners: the generated client over a CA-pinned channel, plaintext refused at a
//! TLS port, client certificates of every kind accepted by the handshake, JWKS over TLS,
//! certificate rotation (on disk and by Reload) and the start-up refusals.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use token_authority::proto::IssueRequest;
use token_authority::state::config::ConfigSource;
use tonic::transport::Endpoint;

use crate::helpers::{TestApp, start_connecting, test_config};
use crate::pki::{CertAndKey, TestCa, TestPki, client_tls, tls_channel};

/// The test configuration with KeyAdmin on and `[server.tls]` naming the files of `pki`,
/// written to `data_dir/config.toml` so Reload reads it again.
fn tls_config(pki: &TestPki) -> String {
    test_config().replacen("[server]\n", "[server]\nadmin = true\n", 1) + &pki.files.toml()
}

/// A server on TLS (client certificates requested when `client_ca`), with clients that trust
/// the test CA and present `identity`.
async fn spawn_tls_app(client_ca: bool, identity: Option<&CertAndKey>) -> (TestApp, TestPki) {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let pki = TestPki::new(data_dir.path(), client_ca);
    let path = data_dir.path().join("config.toml");
    std::fs::write(&path, tls_config(&pki)).unwrap();
    let app = start_connecting(
        ConfigSource::File(path),
        data_dir,
        SystemTime::now(),
        Some(client_tls(&pki.ca, identity)),
    )
    .await;
    (app, pki)
}

async fn issue_on(channel: tonic::transport::Channel) -> Result<String, tonic::Status> {
    token_authority::proto::token_authority_client::TokenAuthorityClient::new(channel)
        .issue(IssueRequest {
            profile: "hs256".into(),
            subject: "user-1".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().token)
}

#[tokio::test]
async fn issue_works_over_tls_through_a_channel_pinned_to_the_test_ca() {
    let (app, _pki) = spawn_tls_app(false, None).await;
    let issued = app.issue("hs256", "user-1").await;
    let claims = crate::helpers::jose_verify("HS256", &issued.token).unwrap();
    assert_eq!(claims.subject.as_deref(), Some("user-1"));
}

#[tokio::test]
async fn a_plaintext_client_is_refused_at_a_tls_port() {
    let (app, _pki) = spawn_tls_app(false, None).await;
    let plain = Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    // Either the connection or the first call fails: HTTP/2 in the clear is not TLS.
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(channel) => issue_on(channel).await.is_err(),
    };
    assert!(refused, "a plaintext call was answered on the TLS port");
}

#[tokio::test]
async fn a_client_that_trusts_another_ca_does_not_connect() {
    let (app, _pki) = spawn_tls_app(false, None).await;
    let other = TestCa::new("some other CA");
    assert!(
        tls_channel(app.addr, client_tls(&other, None))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn with_a_client_ca_the_handshake_completes_with_any_client_certificate_or_none() {
    let (app, pki) = spawn_tls_app(true, None).await;
    let other_ca = TestCa::new("some other CA");
    let spiffe = "spiffe://example.org/ns/prod/sa/billing";
    let presented = [
        ("no certificate", None),
        (
            "a valid SPIFFE certificate",
            Some(pki.ca.client_with_uri(spiffe)),
        ),
        (
            "a valid DNS certificate",
            Some(pki.ca.client_with_dns("ops.internal")),
        ),
        (
            "an expired certificate",
            Some(pki.ca.expired_client(spiffe)),
        ),
        (
            "a certificate from another CA",
            Some(other_ca.client_with_uri(spiffe)),
        ),
        (
            "a server-only certificate",
            Some(pki.ca.server_only_client(spiffe)),
        ),
    ];
    for (what, identity) in presented {
        let channel = tls_channel(app.addr, client_tls(&pki.ca, identity.as_ref()))
            .await
            .unwrap_or_else(|e| panic!("{what}: the handshake failed: {e}"));
        // No callers are configured, so every peer may call; the certificate's outcome is
        // for caller authentication to read.
        let token = issue_on(channel).await;
        assert!(token.is_ok(), "{what}: {token:?}");
    }
}

/// Retries `attempt` every 100 ms for up to 15 s (the files are polled every 2 s) until it
/// gives `Some`.
async fn eventually<T, F: Future<Output = Option<T>>>(mut attempt: impl FnMut() -> F) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(done) = attempt().await {
            return done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up after 15 s of waiting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn jwks_is_served_over_tls_on_the_http_listener() {
    let (app, pki) = spawn_tls_app(true, None).await;
    assert!(app.http_base.starts_with("https://"));
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let answer = client
        .get(format!("{}/.well-known/jwks.json", app.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let jwks: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert!(!jwks["keys"].as_array().unwrap().is_empty(), "{jwks}");

    let plain = app.http_base.replacen("https://", "http://", 1);
    let plaintext = reqwest::Client::new()
        .get(format!("{plain}/.well-known/jwks.json"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plaintext.is_err(),
        "plain HTTP was answered on the TLS port"
    );
}

#[tokio::test]
async fn a_certificate_rewritten_on_disk_reaches_new_connections_while_an_open_one_keeps_working() {
    let (app, pki) = spawn_tls_app(false, None).await;
    app.issue("hs256", "before-rotation").await;

    let new_ca = TestCa::new("the next CA");
    pki.files.replace(&new_ca.server_cert());
    eventually(|| async {
        let channel = tls_channel(app.addr, client_tls(&new_ca, None))
            .await
            .ok()?;
        issue_on(channel).await.ok()
    })
    .await;

    // The connection opened before the rotation still answers on the old certificate (a new
    // one pinned to the old CA could not be made any more).
    app.issue("hs256", "after-rotation").await;
    assert!(
        tls_channel(app.addr, client_tls(&pki.ca, None))
            .await
            .is_err()
    );
    assert!(crate::helpers::captured_logs().contains("TLS certificate reloaded"));
}

#[tokio::test]
async fn reload_serves_a_new_certificate_to_the_next_connection_at_once() {
    let (mut app, pki) = spawn_tls_app(false, None).await;
    let new_ca = TestCa::new("the next CA");
    pki.files.replace(&new_ca.server_cert());
    app.admin
        .reload(token_authority::proto::ReloadRequest {})
        .await
        .unwrap();
    let channel = tls_channel(app.addr, client_tls(&new_ca, None))
        .await
        .unwrap();
    issue_on(channel).await.unwrap();
    app.issue("hs256", "on-the-old-connection").await;
}

/// `last_reload_error` of ListKeys once it mentions `needle`.
async fn reload_error_mentioning(app: &TestApp, needle: &str) -> String {
    eventually(|| async {
        let error = app
            .admin
            .clone()
            .list_keys(token_authority::proto::ListKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .last_reload_error;
        error.contains(needle).then_some(error)
    })
    .await
}

#[tokio::test]
async fn a_broken_certificate_on_disk_keeps_the_old_one_serving_and_shows_in_list_keys() {
    let (app, pki) = spawn_tls_app(true, None).await;
    std::fs::write(&pki.files.cert_file, "not a certificate\n").unwrap();
    let error = reload_error_mentioning(&app, "server.tls.cert_file").await;
    assert!(error.contains("no PEM CERTIFICATE block"), "{error}");
    assert!(
        error.contains("previous certificate keeps serving"),
        "{error}"
    );

    let channel = tls_channel(app.addr, client_tls(&pki.ca, None))
        .await
        .unwrap();
    issue_on(channel).await.unwrap();
    app.issue("hs256", "on-the-open-connection").await;

    // Fixed files are picked up at the next poll, and the error goes away.
    let next = pki.ca.server_cert_named("the next server certificate");
    pki.files.replace(&next);
    eventually(|| async {
        let listing = app
            .admin
            .clone()
            .list_keys(token_authority::proto::ListKeysRequest::default())
            .await
            .ok()?
            .into_inner();
        listing.last_reload_error.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_new_key_that_does_not_match_the_new_certificate_is_refused_by_reload() {
    let (mut app, pki) = spawn_tls_app(false, None).await;
    let next = pki.ca.server_cert();
    std::fs::write(&pki.files.cert_file, &next.cert_pem).unwrap();
    let status = app
        .admin
        .reload(token_authority::proto::ReloadRequest {})
        .await
        .unwrap_err();
    assert!(
        status.message().contains("server.tls.key_file"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("does not match"),
        "{}",
        status.message()
    );
    // The old certificate and key still serve new connections.
    let channel = tls_channel(app.addr, client_tls(&pki.ca, None))
        .await
        .unwrap();
    issue_on(channel).await.unwrap();
}

/// Loading the test configuration with this `[server.tls]` table fails; the message.
fn refusal(tls_table: &str, dir: &std::path::Path) -> String {
    crate::helpers::test_env();
    for name in ["hs256", "hs384", "hs512"] {
        std::fs::write(dir.join(format!("{name}.secret")), vec![b'x'; 64]).unwrap();
    }
    let toml = test_config() + tls_table;
    let e = token_authority::state::config::Config::from_toml(&toml, "tls.toml", dir).unwrap_err();
    format!("{e:#}")
}

#[test]
fn start_up_refuses_tls_files_that_do_not_load_naming_the_file_the_field_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("test CA");
    let (server, other) = (ca.server_cert(), ca.server_cert());
    std::fs::write(d.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(d.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(d.join("other.key"), &other.key_pem).unwrap();
    std::fs::write(d.join("garbage.pem"), "hello\n").unwrap();
    let table = |cert: &str, key: &str, ca: Option<&str>| {
        let ca = ca.map_or(String::new(), |ca| format!("client_ca_file = \"{ca}\"\n"));
        format!("\n[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{ca}")
    };
    let cases = [
        (
            table("missing.pem", "server.key", None),
            [
                "tls.toml",
                "server.tls.cert_file",
                "missing.pem",
                "cannot read the file",
            ],
        ),
        (
            table("garbage.pem", "server.key", None),
            [
                "tls.toml",
                "server.tls.cert_file",
                "garbage.pem",
                "no PEM CERTIFICATE block",
            ],
        ),
        (
            table("server.pem", "garbage.pem", None),
            [
                "tls.toml",
                "server.tls.key_file",
                "garbage.pem",
                "no PEM private key block",
            ],
        ),
        (
            table("server.pem", "other.key", None),
            [
                "tls.toml",
                "server.tls.key_file",
                "other.key",
                "does not match",
            ],
        ),
        (
            table("server.pem", "server.key", Some("no-ca.pem")),
            [
                "tls.toml",
                "server.tls.client_ca_file",
                "no-ca.pem",
                "cannot read the file",
            ],
        ),
        (
            table("server.pem", "server.key", Some("garbage.pem")),
            [
                "tls.toml",
                "server.tls.client_ca_file",
                "garbage.pem",
                "no PEM CERTIFICATE block",
            ],
        ),
    ];
    for (tls_table, expected) in cases {
        let message = refusal(&tls_table, d);
        for part in expected {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }
    let misspelt = refusal(
        "\n[server.tls]\ncert = \"server.pem\"\nkey_file = \"server.key\"\n",
        d,
    );
    assert!(misspelt.contains("unknown field `cert`"), "{misspelt}");
}
