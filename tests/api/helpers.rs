//! `spawn_app()`: the real server on 127.0.0.1:0 with a test configuration, a generated client,
//! a clock the test moves, and a shutdown handle. Plus an independent JOSE implementation
//! (jwt-simple, its own crypto and JWS code) to cross-check tokens in both directions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use jwt_simple::prelude::*;
use serde_json::{Map, Value};
use token_authority::api::server;
use token_authority::core::clock::{Clock as _, ManualClock};
use token_authority::proto::key_admin_client::KeyAdminClient;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{IssueRequest, IssueResponse, VerifyRequest, VerifyResponse};
use token_authority::state::config::{Config, ConfigSource};
use token_authority::state::live::Live;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

pub const HS256_SECRET: &[u8] = b"test-secret-of-exactly-32-bytes!";
pub const HS384_SECRET: &[u8] = b"test-secret-for-hs384-which-is-48-bytes-long!!!!";
pub const HS512_SECRET: &[u8] = b"test-secret-for-hs512-which-must-be-at-least-64-bytes-long!!!!!!";

/// Every algorithm, named as in the `alg` header and (lower-cased) as its test profile.
pub const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// One key and one profile per algorithm (profile "hs256" signs with key "hs256-key", …), plus
/// profiles that exercise issuer, audience, typ, several verify keys, login URLs and verify-only keys.
pub fn test_config() -> String {
    let mut toml = String::from("[server]\nlisten = \"127.0.0.1:0\"\n\n");
    for alg in ALGORITHMS {
        let lower = alg.to_lowercase();
        let source = match alg {
            "HS256" | "HS384" | "HS512" => format!("secret_file = \"{lower}.secret\""),
            "ES256" => format!("private_key_file = {:?}", fixture("ec-p256.pem")),
            "ES384" => format!("private_key_file = {:?}", fixture("ec-p384.pem")),
            "EdDSA" => format!("private_key_file = {:?}", fixture("ed25519.pem")),
            _ => format!("private_key_file = {:?}", fixture("rsa-2048.pem")),
        };
        toml.push_str(&format!(
            "[[keys]]\nid = \"{lower}-key\"\nalgorithm = \"{alg}\"\n{source}\n\n"
        ));
        toml.push_str(&format!(
            "[profiles.{lower}]\nsigning_key = \"{lower}-key\"\nttl = \"5m\"\nmax_ttl = \"1h\"\n\n"
        ));
    }
    toml.push_str(&format!(
        r#"
[[keys]]
id = "hs256-second"
algorithm = "HS256"
secret_env = "TOKEN_AUTHORITY_TEST_SECOND_SECRET"

[[keys]]
id = "rs256-public"
algorithm = "RS256"
public_key_file = {rsa_pub:?}

[profiles.default]
signing_key = "es256-key"
issuer = "https://auth.test"
ttl = "5m"
max_ttl = "1h"

[profiles.strict]
signing_key = "es256-key"
issuer = "https://auth.test"
audience = ["billing", "reports"]
typ = "at+jwt"
leeway = "5s"
required_claims = ["email"]
ttl = "5m"
max_ttl = "1h"

[profiles.override]
signing_key = "hs256-key"
audience = ["default-audience"]
allow_audience_override = true

[profiles.two-keys]
signing_key = "hs256-key"
verify_keys = ["hs256-key", "hs256-second"]

[profiles.partner]
verify_keys = ["rs256-public"]

[profiles.seatable]
signing_key = "hs256-key"
ttl = "30s"
max_ttl = "60s"
subject_claim = "user_id"
required_claims = ["exp", "user_id"]
login_url = "https://cloud.seatable.io/sso-auto-login/?token={{token}}&next={{next}}"
allowed_next_origins = ["https://cloud.seatable.io"]

[profiles.tiny]
signing_key = "hs256-key"
max_token_bytes = 256

[profiles.access]
signing_key = "hs256-key"
subject_claim = "user_id"
claims = {{ token_type = "access" }}

[profiles.refresh]
signing_key = "hs256-key"
subject_claim = "user_id"
ttl = "24h"
claims = {{ token_type = "refresh" }}
"#,
        rsa_pub = fixture("rsa-2048.pub.pem"),
    ));
    toml
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub client: TokenAuthorityClient<Channel>,
    pub health: HealthClient<Channel>,
    /// Key administration; answers UNIMPLEMENTED unless the config says `admin = true`.
    pub admin: KeyAdminClient<Channel>,
    pub channel: Channel,
    /// The gRPC address, for tests that open connections of their own.
    pub addr: std::net::SocketAddr,
    pub clock: Arc<ManualClock>,
    /// The live profiles: `live.tick()` runs key rotation after the test moved the clock.
    pub live: Arc<Live>,
    /// `http://127.0.0.1:PORT` of the JWKS / discovery listener (always on in tests).
    pub http_base: String,
    /// Holds the generated secrets and managed keys; removed when the test ends.
    pub data_dir: Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&test_config()).await
}

pub async fn spawn_app_with(config_toml: &str) -> TestApp {
    spawn_app_in(config_toml, Arc::new(tempfile::tempdir().unwrap())).await
}

/// Loads `config_toml` as a config file written into `data_dir`, so Reload and SIGHUP have a
/// file to read again; the test may rewrite `data_dir/config.toml` and reload.
pub async fn spawn_app_from_file(config_toml: &str) -> TestApp {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let path = data_dir.path().join("config.toml");
    std::fs::write(&path, config_toml).unwrap();
    start(ConfigSource::File(path), data_dir, SystemTime::now()).await
}

/// Starts on `config_toml` with an existing data directory (a restart keeps managed keys).
pub async fn spawn_app_in(config_toml: &str, data_dir: Arc<tempfile::TempDir>) -> TestApp {
    start(
        ConfigSource::text(config_toml, "test config"),
        data_dir,
        SystemTime::now(),
    )
    .await
}

/// Starts the server on `source` in `data_dir`, its clock stopped at `start_at`.
pub async fn start(
    source: ConfigSource,
    data_dir: Arc<tempfile::TempDir>,
    start_at: SystemTime,
) -> TestApp {
    start_connecting(source, data_dir, start_at, None).await
}

/// Starts the server as [`start`] does; its clients connect over TLS with `tls` when given
/// (the configuration must then have a `[server.tls]` table), and `http_base` is `https://`.
pub async fn start_connecting(
    source: ConfigSource,
    data_dir: Arc<tempfile::TempDir>,
    start_at: SystemTime,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> TestApp {
    install_log_capture();
    for (name, secret) in [
        ("hs256", HS256_SECRET),
        ("hs384", HS384_SECRET),
        ("hs512", HS512_SECRET),
    ] {
        std::fs::write(data_dir.path().join(format!("{name}.secret")), secret).unwrap();
    }
    test_env();
    let config = Config::load(source, data_dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http_base = format!("{scheme}://{}", http.local_addr().unwrap());
    let clock = Arc::new(ManualClock::new(start_at));
    let (tx, rx) = oneshot::channel();
    // The test moves the clock and calls `live.tick()` itself.
    let app = server::Server::new(config, clock.clone())
        .unwrap()
        .without_rotation_task();
    let live = app.live();
    let listeners = server::Listeners {
        grpc: listener,
        http: Some(http),
    };
    let server = tokio::spawn(app.serve(listeners, async {
        let _ = rx.await;
    }));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}")).unwrap();
    let endpoint = match tls {
        Some(tls) => endpoint.tls_config(tls).unwrap(),
        None => endpoint,
    };
    let channel = endpoint.connect().await.unwrap();
    TestApp {
        client: TokenAuthorityClient::new(channel.clone()),
        health: HealthClient::new(channel.clone()),
        admin: KeyAdminClient::new(channel.clone()),
        channel,
        addr,
        clock,
        live,
        http_base,
        data_dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// The second HMAC secret of the test config comes from the environment.
pub const SECOND_SECRET: &str = "another-test-secret-32-bytes-long!!";

/// The secret the SeaTable, Weavy and simplejwt examples read from their environment variables.
pub const SEATABLE_SECRET: &str = "seatable-sso-secret-key-of-32-bytes!";

/// Sets the environment the test configs read, once per test binary.
pub fn test_env() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        // SAFETY: every reader of the environment in this binary (config loading) first calls
        // test_env(), which blocks until these writes have finished.
        unsafe {
            std::env::set_var("TOKEN_AUTHORITY_TEST_SECOND_SECRET", SECOND_SECRET);
            // An HMAC key as a JWK (`jwk_env`), the secret of the HS256 test key.
            let jwk = format!(
                r#"{{"kty":"oct","kid":"env-jwk","alg":"HS256","k":"{}"}}"#,
                b64(HS256_SECRET)
            );
            std::env::set_var("TOKEN_AUTHORITY_TEST_HS256_JWK", jwk);
            for var in [
                "SSO_SECRET_KEY",
                "WEAVY_CLIENT_SECRET",
                "DJANGO_JWT_SIGNING_KEY",
            ] {
                std::env::set_var(var, SEATABLE_SECRET);
            }
        }
    });
}

impl TestApp {
    /// Issues under `profile` for `subject` and returns the answer, panicking on an error status.
    pub async fn issue(&self, profile: &str, subject: &str) -> IssueResponse {
        self.client
            .clone()
            .issue(IssueRequest {
                profile: profile.into(),
                subject: subject.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Sends an Issue request that must fail, and returns its error status.
    pub async fn issue_status(&self, request: IssueRequest) -> tonic::Status {
        self.client.clone().issue(request).await.unwrap_err()
    }

    /// Issues with extra `claims` (a JSON object), panicking on an error status.
    pub async fn issue_with_claims(
        &self,
        profile: &str,
        subject: &str,
        claims: Value,
    ) -> IssueResponse {
        self.client
            .clone()
            .issue(IssueRequest {
                profile: profile.into(),
                subject: subject.into(),
                claims: Some(to_struct(claims)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn verify(&self, profile: &str, token: &str) -> VerifyResponse {
        self.verify_for(profile, token, "").await
    }

    pub async fn verify_for(&self, profile: &str, token: &str, audience: &str) -> VerifyResponse {
        self.client
            .clone()
            .verify(VerifyRequest {
                token: token.into(),
                profile: profile.into(),
                audience: audience.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// The test clock's time, in Unix seconds.
    pub fn unix_now(&self) -> u64 {
        self.clock.unix_seconds()
    }

    /// Moves the clock `secs` forward and lets rotation catch up, as the rotation task would.
    pub async fn advance(&self, secs: u64) {
        self.clock.advance(std::time::Duration::from_secs(secs));
        self.live.tick().await.unwrap();
    }

    /// Moves the clock to `at` (Unix seconds) and lets rotation catch up.
    pub async fn advance_to(&self, at: u64) {
        let now = self.unix_now();
        assert!(at >= now, "the clock only moves forward");
        self.advance(at - now).await;
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn wait_stopped(&mut self) -> anyhow::Result<()> {
        self.server.take().unwrap().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

// ---- logs -------------------------------------------------------------------------------

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every test server logs into one buffer, so a test can read what operators would see.
fn install_log_capture() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogBuffer(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buffer
    });
}

/// All log text written so far by every server in this test binary.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get().unwrap().lock().unwrap()).into_owned()
}

// ---- the independent JOSE implementation --------------------------------------------------

pub type JoseClaims = JWTClaims<Map<String, Value>>;

fn lenient() -> VerificationOptions {
    VerificationOptions {
        time_tolerance: Some(Duration::from_secs(0)),
        ..Default::default()
    }
}

/// Verifies `token` as `alg` with jwt-simple, using the test key of that algorithm.
pub fn jose_verify(alg: &str, token: &str) -> Result<JoseClaims, jwt_simple::Error> {
    let opts = Some(lenient());
    match alg {
        "HS256" => HS256Key::from_bytes(HS256_SECRET).verify_token(token, opts),
        "HS384" => HS384Key::from_bytes(HS384_SECRET).verify_token(token, opts),
        "HS512" => HS512Key::from_bytes(HS512_SECRET).verify_token(token, opts),
        "RS256" => {
            RS256PublicKey::from_pem(&fixture_text("rsa-2048.pub.pem"))?.verify_token(token, opts)
        }
        "RS384" => {
            RS384PublicKey::from_pem(&fixture_text("rsa-2048.pub.pem"))?.verify_token(token, opts)
        }
        "RS512" => {
            RS512PublicKey::from_pem(&fixture_text("rsa-2048.pub.pem"))?.verify_token(token, opts)
        }
        "PS256" => {
            PS256PublicKey::from_pem(&fixture_text("rsa-2048.pub.pem"))?.verify_token(token, opts)
        }
        "PS384" => {
            PS384PublicKey::from_pem(&fixture_text("rsa-2048.pub.pem"))?.verify_token(token, opts)
        }
        "PS512" => {
            PS512PublicKey::from_pem(&fixture_text("rsa-2048.pub.pem"))?.verify_token(token, opts)
        }
        "ES256" => {
            ES256PublicKey::from_pem(&fixture_text("ec-p256.pub.pem"))?.verify_token(token, opts)
        }
        "ES384" => {
            ES384PublicKey::from_pem(&fixture_text("ec-p384.pub.pem"))?.verify_token(token, opts)
        }
        "EdDSA" => {
            Ed25519PublicKey::from_pem(&fixture_text("ed25519.pub.pem"))?.verify_token(token, opts)
        }
        other => panic!("no test key for {other}"),
    }
}

/// Signs `claims` as `alg` with jwt-simple and the test key of that algorithm; `kid` if given.
pub fn jose_sign(alg: &str, claims: JoseClaims, kid: Option<&str>) -> String {
    macro_rules! sign {
        ($key:expr) => {
            sign!($key, sign)
        };
        ($key:expr, $method:ident) => {{
            let key = $key;
            let key = match kid {
                Some(kid) => key.with_key_id(kid),
                None => key,
            };
            key.$method(claims).unwrap()
        }};
    }
    match alg {
        "HS256" => sign!(HS256Key::from_bytes(HS256_SECRET), authenticate),
        "HS384" => sign!(HS384Key::from_bytes(HS384_SECRET), authenticate),
        "HS512" => sign!(HS512Key::from_bytes(HS512_SECRET), authenticate),
        "RS256" => sign!(RS256KeyPair::from_pem(&fixture_text("rsa-2048.pem")).unwrap()),
        "RS384" => sign!(RS384KeyPair::from_pem(&fixture_text("rsa-2048.pem")).unwrap()),
        "RS512" => sign!(RS512KeyPair::from_pem(&fixture_text("rsa-2048.pem")).unwrap()),
        "PS256" => sign!(PS256KeyPair::from_pem(&fixture_text("rsa-2048.pem")).unwrap()),
        "PS384" => sign!(PS384KeyPair::from_pem(&fixture_text("rsa-2048.pem")).unwrap()),
        "PS512" => sign!(PS512KeyPair::from_pem(&fixture_text("rsa-2048.pem")).unwrap()),
        "ES256" => sign!(ES256KeyPair::from_pem(&fixture_text("ec-p256.pem")).unwrap()),
        "ES384" => sign!(ES384KeyPair::from_pem(&fixture_text("ec-p384.pem")).unwrap()),
        "EdDSA" => sign!(Ed25519KeyPair::from_pem(&fixture_text("ed25519.pem")).unwrap()),
        other => panic!("no test key for {other}"),
    }
}

/// Claims with a subject and `extra`, valid for `secs` from now.
///
/// The test server's clock stands still at its start while real time (which jwt-simple reads)
/// runs on, so iat and nbf are set a minute back to stay in the server's past.
pub fn claims_for(subject: &str, extra: Value, secs: u64) -> JoseClaims {
    let extra = match extra {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut claims =
        Claims::with_custom_claims(extra, Duration::from_secs(secs)).with_subject(subject);
    let a_minute_ago = Duration::from_secs(now() - 60);
    claims.issued_at = Some(a_minute_ago);
    claims.invalid_before = Some(a_minute_ago);
    claims
}

// ---- hand-made tokens, for what no JOSE library will produce ------------------------------

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with exactly this header and payload text, HMAC-signed with `secret`.
pub fn hs256_raw(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(sig.as_ref()))
}

/// Asserts a gRPC error's code and that its message mentions `message_has`.
pub fn assert_status(status: &tonic::Status, code: tonic::Code, message_has: &str) {
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(message_has),
        "{:?} should mention {message_has:?}",
        status.message()
    );
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The decoded payload of a token, without any checking.
pub fn payload(token: &str) -> Map<String, Value> {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The decoded header of a token, without any checking.
pub fn header(token: &str) -> Map<String, Value> {
    use base64::Engine as _;
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

// ---- protobuf Struct <-> JSON -------------------------------------------------------------

pub fn to_struct(json: Value) -> prost_types::Struct {
    fn value(json: Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match json {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            Value::String(s) => Kind::StringValue(s),
            Value::Array(items) => Kind::ListValue(prost_types::ListValue {
                values: items.into_iter().map(value).collect(),
            }),
            Value::Object(map) => Kind::StructValue(to_struct(Value::Object(map))),
        };
        prost_types::Value { kind: Some(kind) }
    }
    match json {
        Value::Object(map) => prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, value(v))).collect(),
        },
        other => panic!("not an object: {other}"),
    }
}

pub fn from_struct(s: &prost_types::Struct) -> Value {
    fn value(v: &prost_types::Value) -> Value {
        use prost_types::value::Kind;
        match v.kind.as_ref().unwrap() {
            Kind::NullValue(_) => Value::Null,
            Kind::BoolValue(b) => Value::Bool(*b),
            Kind::NumberValue(n) => serde_json::json!(*n),
            Kind::StringValue(s) => Value::String(s.clone()),
            Kind::ListValue(l) => Value::Array(l.values.iter().map(value).collect()),
            Kind::StructValue(s) => from_struct(s),
        }
    }
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    )
}

/// Decodes unpadded base64url, as JWK members are written.
pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// Every file and directory below `dir`, recursively, sorted.
pub fn paths_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}
