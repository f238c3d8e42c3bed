//! Key administration: ListKeys, RotateKey (with and without revoking the old key), and the
//! admin service staying off unless the configuration turns it on.

use std::time::Duration;

use serde_json::Value;
use token_authority::proto::{
    KeyState, ListKeysRequest, ProfileKeys, RotateKeyRequest, RotateKeyResponse, VerifyFailure,
};
use tonic::Code;

use crate::helpers::*;

/// A managed ES256 profile, a file-key profile, a verify-only partner and an HMAC profile.
fn admin_config() -> String {
    format!(
        r#"
[server]
admin = true
jwks_cache = "1m"

[[keys]]
id = "file-es256"
algorithm = "ES256"
private_key_file = {es256:?}

[[keys]]
id = "partner-rsa"
algorithm = "RS256"
public_key_file = {rsa_pub:?}

[[keys]]
id = "sso-secret"
algorithm = "HS256"
secret_file = "hs256.secret"

[profiles.rotating]
issuer = "https://auth.example.test"
ttl = "1m"
max_ttl = "2m"
[profiles.rotating.rotation]
algorithm = "ES256"
rotate_every = "10m"

[profiles.files]
signing_key = "file-es256"
verify_keys = ["file-es256", "partner-rsa"]

[profiles.sso]
signing_key = "sso-secret"
"#,
        es256 = fixture("ec-p256.pem"),
        rsa_pub = fixture("rsa-2048.pub.pem"),
    )
}

async fn keys_of(app: &TestApp, profile: &str) -> ProfileKeys {
    let answer = app
        .admin
        .clone()
        .list_keys(ListKeysRequest {
            profile: profile.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.profiles.len(), 1);
    answer.profiles.into_iter().next().unwrap()
}

async fn rotate(
    app: &TestApp,
    profile: &str,
    revoke_previous: bool,
) -> Result<RotateKeyResponse, tonic::Status> {
    app.admin
        .clone()
        .rotate_key(RotateKeyRequest {
            profile: profile.into(),
            revoke_previous,
        })
        .await
        .map(|answer| answer.into_inner())
}

fn seconds(t: &Option<prost_types::Timestamp>) -> u64 {
    t.as_ref().expect("the time is set").seconds as u64
}

#[tokio::test]
async fn the_admin_service_answers_unimplemented_unless_the_config_enables_it() {
    let app = spawn_app().await;
    let status = app
        .admin
        .clone()
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status.message().contains("[server] admin = true"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn list_keys_shows_each_key_with_its_state_times_source_and_public_jwk() {
    let app = spawn_app_with(&admin_config()).await;
    let now = app.unix_now();

    let rotating = keys_of(&app, "rotating").await;
    assert!(rotating.managed);
    assert_eq!(rotating.keys.len(), 1, "{rotating:?}");
    let key = &rotating.keys[0];
    assert_eq!(key.state(), KeyState::Active);
    assert_eq!(key.source, "managed");
    assert_eq!(key.algorithm, "ES256");
    assert_eq!(seconds(&key.active_at), now);
    assert_eq!(seconds(&key.retire_at), now + 600);
    // Removed once every token it signed has expired: max_ttl (2m) after retiring.
    assert_eq!(seconds(&key.remove_at), now + 600 + 120);
    let jwk: Value = serde_json::from_str(&key.public_jwk).unwrap();
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["kid"], key.key_id.as_str());
    assert!(jwk.get("d").is_none(), "never the private part");

    let files = keys_of(&app, "files").await;
    assert!(!files.managed);
    let states: Vec<(&str, KeyState, &str)> = files
        .keys
        .iter()
        .map(|k| (k.key_id.as_str(), k.state(), k.source.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("file-es256", KeyState::Active, "file"),
            ("partner-rsa", KeyState::VerifyOnly, "file")
        ]
    );
    assert!(
        files.keys[0].retire_at.is_none(),
        "a file key without not_after never retires"
    );

    let sso = keys_of(&app, "sso").await;
    assert_eq!(
        sso.keys[0].public_jwk, "",
        "an HMAC secret has no public form"
    );
}

#[tokio::test]
async fn the_successor_is_published_ahead_and_takes_over_exactly_at_the_rotation_time() {
    let app = spawn_app_with(&admin_config()).await;
    let first = keys_of(&app, "rotating").await.keys[0].clone();
    let retire_at = seconds(&first.retire_at);
    // publish_ahead = max_ttl (2m) + jwks_cache (1m)
    let publish_at = retire_at - 180;

    app.advance_to(publish_at).await;
    let keys = keys_of(&app, "rotating").await;
    assert_eq!(keys.keys.len(), 2, "{keys:?}");
    let next = &keys.keys[1];
    assert_eq!(next.state(), KeyState::Published);
    assert_eq!(seconds(&next.published_at), publish_at);
    assert_eq!(seconds(&next.active_at), retire_at);
    assert_eq!(app.issue("rotating", "alice").await.key_id, first.key_id);

    app.advance_to(retire_at - 1).await;
    assert_eq!(app.issue("rotating", "alice").await.key_id, first.key_id);
    app.advance_to(retire_at).await;
    assert_eq!(app.issue("rotating", "alice").await.key_id, next.key_id);
    let states: Vec<KeyState> = keys_of(&app, "rotating")
        .await
        .keys
        .iter()
        .map(|k| k.state())
        .collect();
    assert_eq!(states, [KeyState::Retired, KeyState::Active]);
}

#[tokio::test]
async fn rotate_key_signs_with_a_new_key_at_once_while_the_old_one_keeps_verifying() {
    let app = spawn_app_with(&admin_config()).await;
    let before = app.issue("rotating", "alice").await;

    let rotated = rotate(&app, "rotating", false).await.unwrap();
    assert_ne!(rotated.new_key_id, before.key_id);
    assert!(rotated.revoked_key_ids.is_empty());

    let after = app.issue("rotating", "alice").await;
    assert_eq!(after.key_id, rotated.new_key_id);
    assert!(app.verify("rotating", &before.token).await.valid);
    assert!(app.verify("rotating", &after.token).await.valid);
    let states: Vec<(String, KeyState)> = rotated
        .keys
        .unwrap()
        .keys
        .into_iter()
        .map(|k| (k.key_id.clone(), k.state()))
        .collect();
    assert_eq!(
        states,
        [
            (before.key_id.clone(), KeyState::Retired),
            (rotated.new_key_id.clone(), KeyState::Active)
        ]
    );

    // The old key verifies until every token it signed has expired (max_ttl = 2m after the
    // rotation), then it is removed: the same token is first refused as expired, then as
    // signed by a key that no longer exists.
    app.clock.advance(Duration::from_secs(119));
    app.live.tick().await.unwrap();
    let refused = app.verify("rotating", &before.token).await;
    assert_eq!(
        refused.failure(),
        VerifyFailure::Expired,
        "{}",
        refused.detail
    );
    // Removal is on time even before the rotation task has forgotten the key…
    app.clock.advance(Duration::from_secs(1));
    let refused = app.verify("rotating", &before.token).await;
    assert_eq!(
        refused.failure(),
        VerifyFailure::UnknownKey,
        "{}",
        refused.detail
    );
    assert!(refused.detail.contains("removed"), "{}", refused.detail);
    // …and stays so once it has.
    app.live.tick().await.unwrap();
    let refused = app.verify("rotating", &before.token).await;
    assert_eq!(
        refused.failure(),
        VerifyFailure::UnknownKey,
        "{}",
        refused.detail
    );
}

#[tokio::test]
async fn rotate_key_with_revoke_previous_stops_the_old_key_verifying_at_once() {
    let app = spawn_app_with(&admin_config()).await;
    let before = app.issue("rotating", "alice").await;

    let rotated = rotate(&app, "rotating", true).await.unwrap();
    assert_eq!(
        rotated.revoked_key_ids,
        std::slice::from_ref(&before.key_id)
    );

    let refused = app.verify("rotating", &before.token).await;
    assert!(!refused.valid);
    assert_eq!(refused.failure(), VerifyFailure::UnknownKey);
    let response = reqwest::get(format!("{}/profiles/rotating/jwks.json", app.http_base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let jwks: Value = serde_json::from_str(&body).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [rotated.new_key_id.as_str()]);
    let fresh = app.issue("rotating", "alice").await;
    assert!(app.verify("rotating", &fresh.token).await.valid);
}

#[tokio::test]
async fn rotate_key_refuses_file_profiles_and_unknown_profiles_clearly() {
    let app = spawn_app_with(&admin_config()).await;
    let status = rotate(&app, "files", false).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("not_before"),
        "{}",
        status.message()
    );

    let status = rotate(&app, "nope", false).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("\"nope\""));
}

#[tokio::test]
async fn a_rotation_by_an_operator_survives_a_restart() {
    let data_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut app = spawn_app_in(&admin_config(), data_dir.clone()).await;
    let rotated = rotate(&app, "rotating", false).await.unwrap();
    let token = app.issue("rotating", "alice").await;
    app.trigger_shutdown();
    app.wait_stopped().await.unwrap();

    let app = spawn_app_in(&admin_config(), data_dir).await;
    assert_eq!(
        app.issue("rotating", "bob").await.key_id,
        rotated.new_key_id
    );
    assert!(app.verify("rotating", &token.token).await.valid);
}
