//! Reload without restart: a good file swaps in atomically under load, a broken one keeps the
//! old configuration serving, managed keys carry over, and staged file keys hand over on time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use token_authority::proto::{
    IssueRequest, KeyState, ListKeysRequest, ReloadRequest, VerifyFailure, VerifyRequest,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

fn config(extra: &str) -> String {
    format!(
        r#"
[server]
admin = true

[[keys]]
id = "es"
algorithm = "ES256"
private_key_file = {es256:?}

[[keys]]
id = "hs"
algorithm = "HS256"
secret_file = "hs256.secret"

[profiles.default]
signing_key = "es"
ttl = "5m"

[profiles.rotating]
ttl = "1m"
max_ttl = "2m"
[profiles.rotating.rotation]
algorithm = "ES256"
rotate_every = "1h"
{extra}"#,
        es256 = fixture("ec-p256.pem"),
    )
}

const EXTRA_PROFILE: &str = "\n[profiles.extra]\nsigning_key = \"hs\"\n";
const BROKEN_PROFILE: &str = "\n[profiles.extra]\nsigning_key = \"not-a-key\"\n";

fn config_path(app: &TestApp) -> std::path::PathBuf {
    app.data_dir.path().join("config.toml")
}

fn managed_state(app: &TestApp) -> Vec<u8> {
    std::fs::read(app.data_dir.path().join("managed/rotating/state.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_good_and_broken_files_under_load_without_a_single_failed_call() {
    let app = spawn_app_from_file(&config("")).await;
    let state_before = managed_state(&app);
    let rotating_kid = app.issue("rotating", "alice").await.key_id;

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let client = app.client.clone();
        let (stop, calls) = (stop.clone(), calls.clone());
        workers.push(tokio::spawn(async move {
            let profile = if worker % 2 == 0 {
                "default"
            } else {
                "rotating"
            };
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let issued = client
                    .clone()
                    .issue(IssueRequest {
                        profile: profile.into(),
                        subject: format!("user-{worker}"),
                        ..Default::default()
                    })
                    .await;
                let token = match issued {
                    Ok(answer) => answer.into_inner().token,
                    Err(status) => {
                        failures.push(format!("issue: {status}"));
                        continue;
                    }
                };
                match client
                    .clone()
                    .verify(VerifyRequest {
                        token,
                        profile: profile.into(),
                        audience: String::new(),
                    })
                    .await
                {
                    Ok(answer) if answer.get_ref().valid => {}
                    Ok(answer) => failures.push(format!("verify: {}", answer.into_inner().detail)),
                    Err(status) => failures.push(format!("verify: {status}")),
                }
                calls.fetch_add(2, Ordering::Relaxed);
            }
            failures
        }));
    }

    let mut admin = app.admin.clone();
    for round in 0..10 {
        // A good file with one more profile and a longer default ttl…
        std::fs::write(
            config_path(&app),
            config(EXTRA_PROFILE).replace("\"5m\"", "\"6m\""),
        )
        .unwrap();
        let reloaded = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
        assert_eq!(
            reloaded.profiles,
            ["default", "extra", "rotating"],
            "round {round}"
        );
        assert_eq!(app.issue("extra", "carol").await.key_id, "hs");
        let issued = app.issue("default", "carol").await;
        let lifetime = issued.expires_at.unwrap().seconds - issued.issued_at.unwrap().seconds;
        assert_eq!(lifetime, 360, "the new ttl applies at once");

        // …then a broken one: refused, named, and the previous configuration keeps serving.
        std::fs::write(config_path(&app), config(BROKEN_PROFILE)).unwrap();
        let status = admin.reload(ReloadRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        for part in [
            "config.toml",
            "profile \"extra\"",
            "\"not-a-key\"",
            "previous one keeps serving",
        ] {
            assert!(
                status.message().contains(part),
                "{part:?} in {}",
                status.message()
            );
        }
        assert_eq!(app.issue("extra", "carol").await.key_id, "hs");
        let listed = admin
            .list_keys(ListKeysRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.last_reload_error.contains("not-a-key"));
        let health = app
            .health
            .clone()
            .check(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status(), ServingStatus::Serving);
    }

    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed calls: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        calls.load(Ordering::Relaxed) > 40,
        "the load ran alongside the reloads"
    );

    // The managed profile's rotation block never changed, so neither did its keys.
    assert_eq!(managed_state(&app), state_before);
    assert_eq!(app.issue("rotating", "alice").await.key_id, rotating_kid);

    // A good reload clears the reported error.
    std::fs::write(config_path(&app), config("")).unwrap();
    admin.reload(ReloadRequest {}).await.unwrap();
    let listed = admin
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.last_reload_error, "");
    assert!(listed.last_reload_at.is_some());
}

#[tokio::test]
async fn a_changed_rotation_algorithm_takes_over_at_the_next_rotation_without_refusing_tokens() {
    let app = spawn_app_from_file(&config("")).await;
    let before = app.issue("rotating", "alice").await;
    assert_eq!(before.algorithm, "ES256");

    std::fs::write(
        config_path(&app),
        config("").replace(
            "algorithm = \"ES256\"\nrotate_every",
            "algorithm = \"EdDSA\"\nrotate_every",
        ),
    )
    .unwrap();
    app.admin.clone().reload(ReloadRequest {}).await.unwrap();
    // The key that signs keeps signing until its scheduled retirement…
    let during = app.issue("rotating", "alice").await;
    assert_eq!(during.key_id, before.key_id);
    assert!(app.verify("rotating", &before.token).await.valid);

    // …and an EdDSA key takes over then.
    app.clock.advance(Duration::from_secs(3600));
    app.live.tick().await.unwrap();
    let after = app.issue("rotating", "alice").await;
    assert_eq!(after.algorithm, "EdDSA");
    assert!(app.verify("rotating", &after.token).await.valid);
}

#[tokio::test]
async fn a_staged_file_key_is_published_at_reload_and_takes_over_at_its_not_before() {
    let app = spawn_app_from_file(&staged_config(None)).await;
    let handover = app.unix_now() + 3600;
    std::fs::write(config_path(&app), staged_config(Some(handover))).unwrap();
    app.admin.clone().reload(ReloadRequest {}).await.unwrap();

    // Published at once, signing only from not_before.
    let jwks = app
        .client
        .clone()
        .jwks(token_authority::proto::JwksRequest {
            profile: "staged".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["old", "new"]);
    let states = key_states(&app).await;
    assert_eq!(
        states,
        [
            ("old".into(), KeyState::Active),
            ("new".into(), KeyState::Published)
        ]
    );

    app.clock.advance(Duration::from_secs(3599));
    let last_old = app.issue("staged", "alice").await;
    assert_eq!(last_old.key_id, "old");
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(app.issue("staged", "alice").await.key_id, "new");
    assert_eq!(
        key_states(&app).await,
        [
            ("old".into(), KeyState::Retired),
            ("new".into(), KeyState::Active)
        ]
    );

    // The old key verifies what it signed for max_ttl (5m) past the handover, then is removed.
    app.clock.advance(Duration::from_secs(298));
    assert!(app.verify("staged", &last_old.token).await.valid);
    app.clock.advance(Duration::from_secs(2));
    let refused = app.verify("staged", &last_old.token).await;
    assert_eq!(
        refused.failure(),
        VerifyFailure::UnknownKey,
        "{}",
        refused.detail
    );
}

fn staged_config(new_from: Option<u64>) -> String {
    let mut text = format!(
        r#"
[server]
admin = true

[[keys]]
id = "old"
algorithm = "ES256"
private_key_file = {es256:?}
"#,
        es256 = fixture("ec-p256.pem"),
    );
    let signing = match new_from {
        None => "signing_key = \"old\"".to_owned(),
        Some(at) => {
            let when = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at));
            text.push_str(&format!(
                "\n[[keys]]\nid = \"new\"\nalgorithm = \"EdDSA\"\nprivate_key_file = {:?}\nnot_before = \"{when}\"\n",
                fixture("ed25519.pem")
            ));
            "signing_keys = [\"old\", \"new\"]".to_owned()
        }
    };
    text.push_str(&format!(
        "\n[profiles.staged]\n{signing}\nttl = \"5m\"\nmax_ttl = \"5m\"\n"
    ));
    text
}

async fn key_states(app: &TestApp) -> Vec<(String, KeyState)> {
    app.admin
        .clone()
        .list_keys(ListKeysRequest {
            profile: "staged".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .profiles[0]
        .keys
        .iter()
        .map(|k| (k.key_id.clone(), k.state()))
        .collect()
}
