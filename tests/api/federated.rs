//! Federated profiles: Verify with keys another issuer publishes, fetched from a real HTTPS
//! JWKS server run here (its CA and certificate made at test time with rcgen). The server can
//! rotate keys, go down, answer slowly, with garbage, oversized or redirecting, and counts
//! requests. Tokens are signed by jwt-simple, not by our code. The cache runs on the service's
//! manual clock, so expiry, refetch intervals and stale limits need no waiting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use jwt_simple::prelude::*;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use token_authority::proto::{VerifyFailure, VerifyResponse};
use token_authority::state::config::Config;

use crate::helpers::{TestApp, b64, captured_logs, spawn_app_with};
use crate::pki::TestCa;

const ISSUER: &str = "https://accounts.partner.test";
const AUDIENCE: &str = "our-backend";

// ---- the test HTTPS JWKS server ------------------------------------------------------------

/// How the server answers `/jwks` right now.
#[derive(Clone, Debug)]
enum Mode {
    Serve,
    /// HTTP 503, as an issuer being down looks through its load balancer.
    Down,
    Slow(Duration),
    Garbage,
    /// A body of this many bytes (valid JSON, just too much of it).
    Oversized(usize),
    Redirect,
}

struct Served {
    /// The public keys published, as JWKs.
    keys: Vec<Value>,
    max_age: Option<u64>,
    mode: Mode,
    /// The `issuer` the discovery document states.
    discovery_issuer: String,
}

/// A JWKS server over HTTPS on 127.0.0.1 with a CA of its own.
struct JwksServer {
    base: String,
    ca_file: tempfile::NamedTempFile,
    served: Arc<Mutex<Served>>,
    jwks_requests: Arc<AtomicUsize>,
    discovery_requests: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> JwksServer {
        let ca = TestCa::new(&format!("federated test CA {}", next_ca_number()));
        let server = ca.server_cert();
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca_file, ca.cert_pem.as_bytes()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let base = format!("https://{addr}");
        let served = Arc::new(Mutex::new(Served {
            keys,
            max_age: Some(600),
            mode: Mode::Serve,
            discovery_issuer: base.clone(),
        }));
        let jwks_requests = Arc::new(AtomicUsize::new(0));
        let discovery_requests = Arc::new(AtomicUsize::new(0));
        let handler = Handler {
            base: base.clone(),
            served: served.clone(),
            jwks_requests: jwks_requests.clone(),
            discovery_requests: discovery_requests.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate ends the handshake; nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move { handler.answer(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        JwksServer {
            base,
            ca_file,
            served,
            jwks_requests,
            discovery_requests,
        }
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    fn ca_path(&self) -> String {
        self.ca_file.path().display().to_string()
    }

    fn set_keys(&self, keys: Vec<Value>) {
        self.served.lock().unwrap().keys = keys;
    }

    fn set_mode(&self, mode: Mode) {
        self.served.lock().unwrap().mode = mode;
    }

    fn set_max_age(&self, max_age: Option<u64>) {
        self.served.lock().unwrap().max_age = max_age;
    }

    fn requests(&self) -> usize {
        self.jwks_requests.load(Ordering::SeqCst)
    }
}

/// Each CA gets its own name, so a client trusting one cannot mistake it for another.
fn next_ca_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

#[derive(Clone)]
struct Handler {
    base: String,
    served: Arc<Mutex<Served>>,
    jwks_requests: Arc<AtomicUsize>,
    discovery_requests: Arc<AtomicUsize>,
}

impl Handler {
    async fn answer(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (keys, max_age, mode, discovery_issuer) = {
            let s = self.served.lock().unwrap();
            (
                s.keys.clone(),
                s.max_age,
                s.mode.clone(),
                s.discovery_issuer.clone(),
            )
        };
        let response = |status: u16, body: Vec<u8>| {
            let mut builder = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if let Some(age) = max_age {
                builder = builder.header("cache-control", format!("public, max-age={age}"));
            }
            Ok(builder.body(Full::new(Bytes::from(body))).unwrap())
        };
        match req.uri().path() {
            "/.well-known/openid-configuration" => {
                self.discovery_requests.fetch_add(1, Ordering::SeqCst);
                let doc = json!({
                    "issuer": discovery_issuer,
                    "jwks_uri": format!("{}/jwks", self.base),
                    "id_token_signing_alg_values_supported": ["ES256"],
                });
                response(200, doc.to_string().into_bytes())
            }
            "/jwks" => {
                self.jwks_requests.fetch_add(1, Ordering::SeqCst);
                match mode {
                    Mode::Serve => response(200, json!({ "keys": keys }).to_string().into_bytes()),
                    Mode::Down => response(503, b"{\"error\":\"maintenance\"}".to_vec()),
                    Mode::Slow(delay) => {
                        tokio::time::sleep(delay).await;
                        response(200, json!({ "keys": keys }).to_string().into_bytes())
                    }
                    Mode::Garbage => response(200, b"<html>Bad gateway</html>".to_vec()),
                    Mode::Oversized(len) => {
                        let filler = "x".repeat(len);
                        let body = json!({ "keys": keys, "padding": filler });
                        response(200, body.to_string().into_bytes())
                    }
                    Mode::Redirect => Ok(Response::builder()
                        .status(302)
                        .header("location", "https://elsewhere.test/jwks")
                        .body(Full::new(Bytes::new()))
                        .unwrap()),
                }
            }
            _ => response(404, Vec::new()),
        }
    }
}

// ---- keys and tokens of the outside issuer ---------------------------------------------------

/// An ES256 key of the outside issuer, with its kid.
fn es256(kid: &str) -> ES256KeyPair {
    ES256KeyPair::generate().with_key_id(kid)
}

/// The public JWK of an ES256 key, as an issuer publishes it.
fn es256_jwk(key: &ES256KeyPair) -> Value {
    let point = key.public_key().public_key().to_bytes_uncompressed();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": b64(&point[1..33]),
        "y": b64(&point[33..65]),
        "kid": key.key_id().clone().unwrap(),
        "alg": "ES256",
        "use": "sig",
    })
}

/// Claims from the outside issuer for our audience, issued at the service's `now` and valid
/// for two days (long enough for every clock move below).
fn claims_at(now: u64) -> JWTClaims<NoCustomClaims> {
    let mut claims = Claims::create(Duration::from_secs(1).into())
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject("alice@partner.test");
    claims.issued_at = Some(Duration::from_secs(now).into());
    claims.invalid_before = Some(Duration::from_secs(now).into());
    claims.expires_at = Some(Duration::from_secs(now + 2 * 86400).into());
    claims
}

fn sign(key: &ES256KeyPair, app: &TestApp) -> String {
    key.sign(claims_at(app.unix_now())).unwrap()
}

/// A federated profile `partner` on `jwks_url` trusting the test CA, plus `extra` lines.
fn federated_config(server: &JwksServer, extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[profiles.partner]
jwks_url = "{url}"
jwks_ca_file = "{ca}"
issuer = "{ISSUER}"
audience = ["{AUDIENCE}"]
algorithms = ["ES256"]
jwks_timeout = "5s"
{extra}
"#,
        url = server.jwks_url(),
        ca = server.ca_path(),
    )
}

fn assert_valid(answer: &VerifyResponse) {
    assert!(
        answer.valid,
        "refused: {:?} {}",
        answer.failure(),
        answer.detail
    );
}

fn assert_refused(answer: &VerifyResponse, failure: VerifyFailure, detail_has: &str) {
    assert!(!answer.valid, "expected a refusal ({failure:?}), got valid");
    assert_eq!(answer.failure(), failure, "detail: {}", answer.detail);
    assert!(
        answer.detail.contains(detail_has),
        "detail {:?} should mention {detail_has:?}",
        answer.detail
    );
}

/// Waits until the service answers, which it does only after its start-up fetch, and checks
/// that `key` verifies; the test may change what the server answers from here on.
async fn serving(app: &TestApp, key: &ES256KeyPair) {
    assert_valid(&app.verify("partner", &sign(key, app)).await);
}

/// Moves the service's clock without letting background refreshes run, as if no task woke.
fn advance_clock(app: &TestApp, secs: u64) {
    app.clock.advance(Duration::from_secs(secs));
}

// ---- the cases ------------------------------------------------------------------------------

#[tokio::test]
async fn verify_accepts_tokens_signed_with_a_key_of_the_remote_set() {
    let key = es256("partner-2026-1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let app = spawn_app_with(&federated_config(&server, "")).await;

    let answer = app.verify("partner", &sign(&key, &app)).await;
    assert_valid(&answer);
    assert_eq!(answer.key_id, "partner-2026-1");
    assert_eq!(answer.subject, "alice@partner.test");
    // The set was fetched once, at start-up, and the Verify used the cached copy.
    assert_eq!(server.requests(), 1);

    let other = es256("partner-2026-1");
    let forged = app.verify("partner", &sign(&other, &app)).await;
    assert_refused(&forged, VerifyFailure::BadSignature, "partner-2026-1");

    let logs = captured_logs();
    assert!(logs.contains("remote key set fetched"), "{logs}");
    assert!(logs.contains(&server.jwks_url()), "the log names the URL");
    assert!(
        !logs.contains(&es256_jwk(&key)["x"].as_str().unwrap().to_owned()),
        "no key material in logs"
    );
}

#[tokio::test]
async fn a_rotated_key_is_found_by_refetching_once_the_refetch_interval_has_passed() {
    let old = es256("old");
    let server = JwksServer::start(vec![es256_jwk(&old)]).await;
    let app = spawn_app_with(&federated_config(&server, "")).await;
    serving(&app, &old).await;
    let new = es256("new");
    server.set_keys(vec![es256_jwk(&old), es256_jwk(&new)]);

    // Within jwks_refetch_min (30 s by default) of the start-up fetch, no refetch happens.
    let early = app.verify("partner", &sign(&new, &app)).await;
    assert_refused(&early, VerifyFailure::UnknownKey, "\"new\"");
    assert_eq!(server.requests(), 1);

    advance_clock(&app, 30);
    let answer = app.verify("partner", &sign(&new, &app)).await;
    assert_valid(&answer);
    assert_eq!(answer.key_id, "new");
    assert_eq!(server.requests(), 2);
    assert_valid(&app.verify("partner", &sign(&old, &app)).await);
    assert_eq!(server.requests(), 2, "known keys need no fetch");
}

#[tokio::test]
async fn many_forged_kids_cause_at_most_one_fetch_per_refetch_interval() {
    let key = es256("real");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let app = spawn_app_with(&federated_config(&server, "")).await;
    serving(&app, &key).await;
    advance_clock(&app, 30);

    let forge = |i: usize| sign(&es256(&format!("forged-{i}")), &app);
    let calls = (0..40).map(|i| {
        let token = forge(i);
        let mut client = app.client.clone();
        async move {
            client
                .verify(token_authority::proto::VerifyRequest {
                    token,
                    profile: "partner".into(),
                    audience: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = futures_join_all(calls).await;
    for answer in &answers {
        assert_refused(answer, VerifyFailure::UnknownKey, "forged-");
    }
    assert_eq!(
        server.requests(),
        2,
        "forty unknown kids at once: one fetch"
    );

    for i in 40..60 {
        assert!(!app.verify("partner", &forge(i)).await.valid);
    }
    assert_eq!(server.requests(), 2, "no more fetches within the interval");

    advance_clock(&app, 30);
    assert!(!app.verify("partner", &forge(61)).await.valid);
    assert!(!app.verify("partner", &forge(62)).await.valid);
    assert_eq!(server.requests(), 3, "one more fetch in the next interval");
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
}

/// Runs the futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
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
async fn while_the_issuer_is_down_the_last_good_set_keeps_verifying() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let app = spawn_app_with(&federated_config(&server, "")).await;
    serving(&app, &key).await;
    server.set_mode(Mode::Down);

    // Past the set's max-age (600 s): Verify tries once, fails, and serves the stale set.
    advance_clock(&app, 700);
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
    assert_eq!(server.requests(), 2);
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
    assert_eq!(
        server.requests(),
        2,
        "a failing issuer is asked at most once per interval"
    );
    let logs = captured_logs();
    assert!(logs.contains("answered HTTP 503"), "{logs}");
    assert!(logs.contains("the previous set keeps serving"), "{logs}");

    let metrics = reqwest::get(format!("{}/metrics", app.http_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "token_authority_remote_jwks_fetches_total{profile=\"partner\",result=\"ok\"} 1",
        "token_authority_remote_jwks_fetches_total{profile=\"partner\",result=\"failed\"} 1",
        "token_authority_remote_jwks_age_seconds{profile=\"partner\"} 700",
        "token_authority_remote_jwks_keys{profile=\"partner\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn past_jwks_stale_max_verify_refuses_with_the_reason_until_the_issuer_is_back() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    server.set_max_age(Some(60));
    let app = spawn_app_with(&federated_config(&server, "jwks_stale_max = \"1h\"")).await;
    serving(&app, &key).await;
    server.set_mode(Mode::Down);

    advance_clock(&app, 600 + 3600 + 1);
    let answer = app.verify("partner", &sign(&key, &app)).await;
    assert_refused(&answer, VerifyFailure::UnknownKey, "jwks_stale_max is 1h");
    assert!(answer.detail.contains("HTTP 503"), "{}", answer.detail);
    assert!(
        answer.detail.contains(&server.jwks_url()),
        "{}",
        answer.detail
    );

    server.set_mode(Mode::Serve);
    advance_clock(&app, 30);
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
}

#[tokio::test]
async fn garbage_oversized_and_redirecting_answers_never_replace_the_good_set() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let config = federated_config(&server, "jwks_max_bytes = 4096");
    let app = spawn_app_with(&config).await;
    serving(&app, &key).await;
    let cases = [
        (Mode::Garbage, "not a usable JWK Set"),
        (
            Mode::Oversized(8000),
            "larger than jwks_max_bytes (4096 bytes)",
        ),
        (Mode::Redirect, "redirects are not followed"),
    ];
    for (mode, logged) in cases {
        server.set_mode(mode.clone());
        let before = server.requests();
        advance_clock(&app, 700);
        assert_valid(&app.verify("partner", &sign(&key, &app)).await);
        assert_eq!(server.requests(), before + 1, "{mode:?}: one attempt");
        let logs = captured_logs();
        assert!(
            logs.contains(logged),
            "{mode:?}: logs should say {logged:?}"
        );
    }
}

#[tokio::test]
async fn an_issuer_slower_than_jwks_timeout_keeps_the_good_set_and_logs_the_timeout() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let config =
        federated_config(&server, "").replace("jwks_timeout = \"5s\"", "jwks_timeout = \"2s\"");
    let app = spawn_app_with(&config).await;
    serving(&app, &key).await;
    // Far longer than the timeout: the fetch is cut off at 2 s, not waited out.
    server.set_mode(Mode::Slow(Duration::from_secs(600)));
    advance_clock(&app, 700);
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
    assert_eq!(server.requests(), 2);
    let logs = captured_logs();
    assert!(logs.contains("operation timed out"), "{logs}");
}

#[tokio::test]
async fn a_service_started_on_a_broken_issuer_refuses_with_the_reason_then_recovers() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    server.set_mode(Mode::Garbage);
    let app = spawn_app_with(&federated_config(&server, "")).await;

    let answer = app.verify("partner", &sign(&key, &app)).await;
    assert_refused(
        &answer,
        VerifyFailure::UnknownKey,
        "no fetch has succeeded yet",
    );
    assert!(
        answer.detail.contains("not a usable JWK Set"),
        "{}",
        answer.detail
    );

    server.set_mode(Mode::Serve);
    advance_clock(&app, 30);
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
}

#[tokio::test]
async fn a_server_whose_ca_is_not_trusted_fails_the_fetch_with_a_clear_error() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    // Another server's CA: a real CA file, just not the one that signed this certificate.
    let stranger = JwksServer::start(Vec::new()).await;
    let config = federated_config(&server, "").replace(&server.ca_path(), &stranger.ca_path());
    let app = spawn_app_with(&config).await;

    let answer = app.verify("partner", &sign(&key, &app)).await;
    assert_refused(&answer, VerifyFailure::UnknownKey, "not available");
    assert!(
        answer
            .detail
            .contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        answer.detail
    );
    assert_eq!(
        server.requests(),
        0,
        "no request is sent over an untrusted connection"
    );
}

#[tokio::test]
async fn issuer_discovery_finds_the_set_through_the_openid_configuration() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"

[profiles.partner]
issuer_discovery = true
issuer = "{base}"
jwks_ca_file = "{ca}"
audience = ["{AUDIENCE}"]
algorithms = ["ES256"]
"#,
        base = server.base,
        ca = server.ca_path(),
    );
    let app = spawn_app_with(&config).await;
    let mut claims = claims_at(app.unix_now());
    claims.issuer = Some(server.base.clone());
    let answer = app.verify("partner", &key.sign(claims).unwrap()).await;
    assert_valid(&answer);
    assert_eq!(server.discovery_requests.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests(), 1);

    // A discovery document that names another issuer is not followed.
    server.served.lock().unwrap().discovery_issuer = "https://impostor.test".into();
    let restarted = spawn_app_with(&config).await;
    let mut claims = claims_at(restarted.unix_now());
    claims.issuer = Some(server.base.clone());
    let answer = restarted
        .verify("partner", &key.sign(claims).unwrap())
        .await;
    assert_refused(
        &answer,
        VerifyFailure::UnknownKey,
        "its issuer is \"https://impostor.test\"",
    );
}

#[tokio::test]
async fn a_remote_key_of_an_algorithm_the_profile_does_not_accept_is_never_used() {
    let es384 = ES384KeyPair::generate().with_key_id("p384");
    let point = es384.public_key().public_key().to_bytes_uncompressed();
    let jwk = json!({
        "kty": "EC", "crv": "P-384", "alg": "ES384", "kid": "p384",
        "x": b64(&point[1..49]), "y": b64(&point[49..97]),
    });
    let es = es256("p256");
    let server = JwksServer::start(vec![jwk, es256_jwk(&es)]).await;
    let app = spawn_app_with(&federated_config(&server, "")).await;

    let token = es384.sign(claims_at(app.unix_now())).unwrap();
    let answer = app.verify("partner", &token).await;
    assert_refused(&answer, VerifyFailure::AlgorithmNotAllowed, "accepts ES256");
    assert_valid(&app.verify("partner", &sign(&es, &app)).await);
}

#[tokio::test]
async fn a_background_refresh_runs_before_the_set_expires() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    // max-age 10 s is raised to jwks_cache_min (1 min by default).
    server.set_max_age(Some(10));
    let app = spawn_app_with(&federated_config(&server, "")).await;
    serving(&app, &key).await;

    app.advance(30).await;
    assert_eq!(
        server.requests(),
        1,
        "not due before three quarters of the minute"
    );
    app.advance(15).await;
    assert_eq!(server.requests(), 2, "due at 45 s of a 60 s lifetime");
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
    assert_eq!(server.requests(), 2, "the refreshed set needed no fetch");
}

#[test]
fn federated_settings_that_do_not_hold_together_fail_start_up_naming_profile_and_key() {
    crate::helpers::test_env();
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "[profiles.partner]\nissuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\"]\nalgorithms = [\"RS256\"]\n"
    );
    let cases = [
        (
            "jwks_url = \"http://issuer.test/jwks\"\n",
            "must be an https URL",
        ),
        (
            "jwks_url = \"https://u:p@issuer.test/jwks\"\n",
            "must not carry credentials",
        ),
        (
            "jwks_url = \"https://issuer.test/jwks\"\nissuer_discovery = true\n",
            "not both",
        ),
        (
            "jwks_timeout = \"5s\"\n",
            "jwks_timeout is set but neither jwks_url",
        ),
        (
            "jwks_url = \"https://issuer.test/jwks\"\njwks_cache_min = \"2h\"\njwks_cache_max = \"1h\"\n",
            "jwks_cache_min (2h) is above jwks_cache_max (1h)",
        ),
        (
            "jwks_url = \"https://issuer.test/jwks\"\njwks_ca_file = \"/nonexistent/ca.pem\"\n",
            "jwks_ca_file: cannot read /nonexistent/ca.pem",
        ),
        (
            "jwks_url = \"https://issuer.test/jwks\"\njwks_refetch_min = 30\n",
            "bare number",
        ),
    ];
    for (lines, reason) in cases {
        let text = format!("{base}{lines}");
        let error = format!(
            "{:#}",
            Config::from_toml(&text, "fed.toml", dir.path()).unwrap_err()
        );
        assert!(error.contains("fed.toml"), "{error}");
        assert!(error.contains(reason), "{error:?} should say {reason:?}");
        if !lines.contains("= 30") {
            assert!(error.contains("profile \"partner\""), "{error}");
        }
    }

    let rules = [
        (
            "[profiles.p]\njwks_url = \"https://i.test/jwks\"\nissuer = \"i\"\naudience = [\"a\"]\n",
            "must list the algorithms",
        ),
        (
            "[profiles.p]\njwks_url = \"https://i.test/jwks\"\naudience = [\"a\"]\nalgorithms = [\"ES256\"]\n",
            "must set issuer",
        ),
        (
            "[profiles.p]\njwks_url = \"https://i.test/jwks\"\nissuer = \"i\"\nalgorithms = [\"ES256\"]\n",
            "must set audience",
        ),
        (
            "[profiles.p]\nissuer_discovery = true\naudience = [\"a\"]\nalgorithms = [\"ES256\"]\n",
            "issuer_discovery = true needs issuer",
        ),
        (
            "[profiles.p]\njwks_url = \"https://i.test/jwks\"\nissuer = \"i\"\naudience = [\"a\"]\nalgorithms = [\"ES256\", \"ES256\"]\n",
            "ES256 is listed twice",
        ),
        (
            "[profiles.p]\njwks_url = \"https://i.test/jwks\"\nissuer = \"i\"\naudience = [\"a\"]\nalgorithms = [\"XS256\"]\n",
            "algorithms",
        ),
    ];
    for (text, reason) in rules {
        let error = format!(
            "{:#}",
            Config::from_toml(text, "fed.toml", dir.path()).unwrap_err()
        );
        assert!(error.contains("profile \"p\""), "{error}");
        assert!(error.contains(reason), "{error:?} should say {reason:?}");
    }
}

#[tokio::test]
async fn entries_the_profile_cannot_use_are_skipped_and_the_others_verify() {
    let key = es256("sig-key");
    let mut encryption = es256_jwk(&es256("enc-key"));
    encryption["use"] = json!("enc");
    encryption.as_object_mut().unwrap().remove("alg");
    let rsa_without_alg =
        json!({ "kty": "RSA", "kid": "rsa-no-alg", "n": b64(&[0xc5; 256]), "e": "AQAB" });
    let server = JwksServer::start(vec![encryption, rsa_without_alg, es256_jwk(&key)]).await;
    let app = spawn_app_with(&federated_config(&server, "")).await;

    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
    let logs = captured_logs();
    assert!(logs.contains("remote key skipped"), "{logs}");
    assert!(
        logs.contains("enc-key") && logs.contains("rsa-no-alg"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_cached_set_unless_its_settings_change() {
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let config = federated_config(&server, "");
    let app = crate::helpers::spawn_app_from_file(&config).await;
    serving(&app, &key).await;

    app.live.reload().await.unwrap();
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
    assert_eq!(server.requests(), 1, "an unchanged profile keeps its set");

    let changed = config.replace("jwks_timeout = \"5s\"", "jwks_timeout = \"6s\"");
    std::fs::write(app.data_dir.path().join("config.toml"), changed).unwrap();
    app.live.reload().await.unwrap();
    assert_valid(&app.verify("partner", &sign(&key, &app)).await);
    assert_eq!(server.requests(), 2, "changed settings start a new set");
}

#[tokio::test]
async fn an_rsa_key_without_alg_is_bound_to_the_one_rsa_algorithm_the_profile_accepts() {
    let rsa = RS256KeyPair::from_pem(&crate::helpers::fixture_text("rsa-2048.pem"))
        .unwrap()
        .with_key_id("entra-style");
    let parts = rsa.public_key().to_components();
    // As Microsoft Entra publishes its keys: RSA, use sig, no alg.
    let jwk = json!({
        "kty": "RSA", "use": "sig", "kid": "entra-style",
        "n": b64(&parts.n), "e": b64(&parts.e),
    });
    let server = JwksServer::start(vec![jwk]).await;
    let one = federated_config(&server, "").replace("[\"ES256\"]", "[\"RS256\"]");
    let app = spawn_app_with(&one).await;
    let answer = app
        .verify("partner", &rsa.sign(claims_at(app.unix_now())).unwrap())
        .await;
    assert_valid(&answer);
    assert_eq!(answer.algorithm, "RS256");

    // With two RSA algorithms allowed the key's algorithm would be a guess: it is skipped.
    let two = federated_config(&server, "").replace("[\"ES256\"]", "[\"RS256\", \"PS256\"]");
    let app = spawn_app_with(&two).await;
    let answer = app
        .verify("partner", &rsa.sign(claims_at(app.unix_now())).unwrap())
        .await;
    assert_refused(
        &answer,
        VerifyFailure::UnknownKey,
        "no key of the profile's algorithms",
    );
}

#[tokio::test]
async fn the_binary_trusts_a_ca_given_through_ssl_cert_file() {
    use std::io::BufRead as _;
    let key = es256("k1");
    let server = JwksServer::start(vec![es256_jwk(&key)]).await;
    let dir = tempfile::tempdir().unwrap();
    // No jwks_ca_file: the test CA is trusted only through the system store's SSL_CERT_FILE.
    let config = federated_config(&server, "")
        .replace(&format!("jwks_ca_file = \"{}\"\n", server.ca_path()), "");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_token-authority"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env("SSL_CERT_FILE", server.ca_path())
        .env_remove("SSL_CERT_DIR")
        .env_remove("TOKEN_AUTHORITY_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let done = line.contains("listening");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("the server logs a listening line")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(log.contains("remote key set fetched"), "{log}");
    assert!(log.contains("keys=1"), "{log}");
    assert_eq!(server.requests(), 1);
}
