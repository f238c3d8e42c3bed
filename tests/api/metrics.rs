//! `GET /metrics` as Prometheus scrapes it, read with a Prometheus text parser: calls of every
//! kind counted by RPC, profile and outcome, latency per RPC, key states and rotation
//! deadlines, reloads by result, build info; and no label a caller can invent.

use prometheus_parse::{Sample, Scrape, Value};
use token_authority::proto::{
    IssueRequest, JwksRequest, LoginUrlRequest, ReloadRequest, VerifyRequest,
};

use crate::helpers::*;

/// A managed profile rotating every 5 minutes, a login-link profile, admin on for Reload.
fn metrics_config() -> String {
    r#"
[server]
listen = "127.0.0.1:0"
admin = true
# Keeps publish_ahead (max_ttl + jwks_cache) at 2m, inside the 5m rotation.
jwks_cache = "1m"

[[keys]]
id = "hmac-key"
algorithm = "HS256"
secret_file = "hs256.secret"

[profiles.managed]
ttl = "60s"
max_ttl = "60s"
[profiles.managed.rotation]
algorithm = "ES256"
rotate_every = "5m"

[profiles.sso]
signing_key = "hmac-key"
login_url = "https://app.example.test/sso/?token={token}&next={next}"
allowed_next_origins = ["https://app.example.test"]
"#
    .to_owned()
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let response = reqwest::get(format!("{}/metrics", app.http_base))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap()
        .samples
}

/// The one sample of `metric` with exactly these `labels`, as a number.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| {
            labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.len() == labels.len()
        })
        .map(|s| match &s.value {
            // OpenMetrics counters (`…_total`) and info metrics come through as untyped.
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{metric} {labels:?} appears {} times",
        found.len()
    );
    found.first().copied()
}

fn calls(samples: &[Sample], rpc: &str, profile: &str, outcome: &str, reason: &str) -> f64 {
    let labels = [
        ("rpc", rpc),
        ("profile", profile),
        ("outcome", outcome),
        ("reason", reason),
    ];
    value(samples, "token_authority_calls_total", &labels).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_every_kind_of_call_without_labels_a_caller_can_invent() {
    let app = spawn_app_from_file(&metrics_config()).await;
    let mut client = app.client.clone();

    let issued = app.issue("managed", "alice").await;
    assert!(app.verify("managed", &issued.token).await.valid);
    assert!(app.verify("managed", &issued.token).await.valid);
    assert!(!app.verify("managed", "not.a.token").await.valid);
    let empty_subject = IssueRequest {
        profile: "managed".to_owned(),
        subject: String::new(),
        ..Default::default()
    };
    assert!(client.issue(empty_subject).await.is_err());
    for invented in ["no-such-profile", "another-invented-one"] {
        let status = client
            .verify(VerifyRequest {
                token: issued.token.clone(),
                profile: invented.to_owned(),
                audience: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    client
        .jwks(JwksRequest {
            profile: "managed".to_owned(),
        })
        .await
        .unwrap();
    client
        .login_url(LoginUrlRequest {
            profile: "sso".to_owned(),
            subject: "bob".to_owned(),
            next: "https://app.example.test/home".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();

    let samples = scrape(&app).await;
    assert_eq!(calls(&samples, "Issue", "managed", "ok", ""), 1.0);
    assert_eq!(calls(&samples, "Verify", "managed", "valid", ""), 2.0);
    assert_eq!(
        calls(&samples, "Verify", "managed", "refused", "malformed"),
        1.0
    );
    assert_eq!(
        calls(&samples, "Issue", "managed", "error", "invalid_argument"),
        1.0
    );
    assert_eq!(
        calls(&samples, "Verify", "(unknown)", "error", "not_found"),
        2.0
    );
    assert_eq!(calls(&samples, "Jwks", "managed", "ok", ""), 1.0);
    assert_eq!(calls(&samples, "LoginUrl", "sso", "ok", ""), 1.0);
    // Profile labels are configured names only: the invented ones never appear.
    for sample in samples
        .iter()
        .filter(|s| s.metric == "token_authority_calls_total")
    {
        let profile = sample.labels.get("profile").unwrap();
        assert!(
            ["managed", "sso", "(unknown)"].contains(&profile),
            "unexpected profile label {profile:?}"
        );
    }

    // Latency: one histogram per RPC, counting every call, the refused and failed ones too.
    let histogram = |rpc: &str| {
        samples
            .iter()
            .find(|s| {
                s.metric == "token_authority_call_duration_seconds"
                    && s.labels.get("rpc") == Some(rpc)
            })
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no latency histogram for {rpc}"))
    };
    let Value::Histogram(buckets) = histogram("Verify") else {
        panic!("Verify latency is not a histogram");
    };
    let total = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(total.count, 5.0);
    assert!(buckets.len() > 10, "{buckets:?}");
    for rpc in ["Issue", "Jwks", "LoginUrl"] {
        assert!(matches!(histogram(rpc), Value::Histogram(_)));
    }

    let build = value(
        &samples,
        "token_authority_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert_eq!(build, Some(1.0));
}

#[tokio::test]
async fn metrics_show_key_states_the_rotation_deadlines_and_reloads() {
    let app = spawn_app_from_file(&metrics_config()).await;
    let key = |samples: &[Sample], profile: &str, state: &str| {
        value(
            samples,
            "token_authority_keys",
            &[("profile", profile), ("state", state)],
        )
    };
    let retire = |samples: &[Sample], profile: &str| {
        value(
            samples,
            "token_authority_active_key_retire_seconds",
            &[("profile", profile)],
        )
    };
    let next = |samples: &[Sample], profile: &str| {
        value(
            samples,
            "token_authority_next_key_activate_seconds",
            &[("profile", profile)],
        )
    };

    let samples = scrape(&app).await;
    assert_eq!(key(&samples, "managed", "active"), Some(1.0));
    assert_eq!(key(&samples, "managed", "published"), Some(0.0));
    assert_eq!(key(&samples, "sso", "active"), Some(1.0));
    assert_eq!(retire(&samples, "managed"), Some(300.0));
    assert_eq!(
        next(&samples, "managed"),
        None,
        "no next key is published yet"
    );
    // A file key never retires, so it has no deadline at all.
    assert_eq!(retire(&samples, "sso"), None);

    // publish_ahead (2m) before the rotation the next key is published, and both deadlines
    // count down to the moment it takes over.
    app.advance(180).await;
    app.advance(100).await;
    let samples = scrape(&app).await;
    assert_eq!(key(&samples, "managed", "published"), Some(1.0));
    assert_eq!(retire(&samples, "managed"), Some(20.0));
    assert_eq!(next(&samples, "managed"), Some(20.0));

    app.advance(30).await;
    let samples = scrape(&app).await;
    assert_eq!(key(&samples, "managed", "active"), Some(1.0));
    assert_eq!(key(&samples, "managed", "retired"), Some(1.0));
    assert_eq!(retire(&samples, "managed"), Some(290.0));

    // Reloads by result: one that loads, one that is refused.
    let mut admin = app.admin.clone();
    admin.reload(ReloadRequest {}).await.unwrap();
    std::fs::write(
        app.data_dir.path().join("config.toml"),
        "[profiles.broken]\nttl = 5\n",
    )
    .unwrap();
    admin.reload(ReloadRequest {}).await.unwrap_err();
    let samples = scrape(&app).await;
    let reloads = |result: &str| {
        value(
            &samples,
            "token_authority_reloads_total",
            &[("result", result)],
        )
    };
    assert_eq!(reloads("ok"), Some(1.0));
    assert_eq!(reloads("refused"), Some(1.0));
    // The admin calls themselves are counted like any other RPC.
    assert_eq!(calls(&samples, "Reload", "", "ok", ""), 1.0);
    assert_eq!(
        calls(&samples, "Reload", "", "error", "failed_precondition"),
        1.0
    );
}
