//! TLS on both listeners: the generated client over a CA-pinned channel, plaintext refused at a
//! TLS port, client certificates of every kind accepted by the handshake, JWKS over TLS,
//! certificate rotation (on disk and by Reload) and the start-up refusals.

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
