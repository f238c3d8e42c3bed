//! Managed keys on disk and across time: they survive restarts, a crash's leftovers are cleaned
//! up, a broken state stops start-up clearly, files stay private, rotation hands over on time,
//! and every generated algorithm signs tokens that verify.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jwt_simple::prelude::{ECDSAP256PublicKeyLike as _, ES256PublicKey, NoCustomClaims};
use serde_json::Value;
use token_authority::core::clock::ManualClock;
use token_authority::proto::{IssueRequest, IssueResponse, JwksRequest, VerifyFailure};
use token_authority::state::config::Config;

use crate::helpers::*;

/// One managed profile, "rotating", whose keys the service generates as `algorithm`.
fn managed_config(algorithm: &str) -> String {
    format!("[server]\n\n{}", managed_profile("rotating", algorithm))
}

fn managed_profile(name: &str, algorithm: &str) -> String {
    format!(
        r#"
[profiles.{name}]
issuer = "https://auth.example.test"
ttl = "1m"
max_ttl = "2m"
[profiles.{name}.rotation]
algorithm = "{algorithm}"
rotate_every = "10m"
"#
    )
}

fn key_dir(data_dir: &Path, profile: &str) -> PathBuf {
    data_dir.join("managed").join(profile)
}

/// The file names in a profile's key directory, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `names` sorted as `files_in` sorts, so expectations do not depend on a random kid's first
/// letter.
fn sorted<const N: usize>(names: [String; N]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names
}

/// The key records of a profile's state.json.
fn state_keys(dir: &Path) -> Value {
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    state["keys"].clone()
}

fn state_kids(dir: &Path) -> Vec<String> {
    state_keys(dir)
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Starts on `config` in `data_dir`, remembers the active kid, and stops again.
async fn start_and_stop(config: &str, data_dir: &Arc<tempfile::TempDir>) -> String {
    let mut app = spawn_app_in(config, data_dir.clone()).await;
    let kid = app.issue("rotating", "alice").await.key_id;
    app.trigger_shutdown();
    app.wait_stopped().await.unwrap();
    kid
}

/// Issues under "rotating" with the longest lifetime the profile allows.
async fn issue_for_max_ttl(app: &TestApp) -> IssueResponse {
    app.client
        .clone()
        .issue(IssueRequest {
            profile: "rotating".into(),
            subject: "alice".into(),
            ttl: Some(prost_types::Duration {
                seconds: 120,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn tokens_issued_before_a_restart_verify_after_it_and_the_same_key_keeps_signing() {
    let config = managed_config("ES256");
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let dir = key_dir(data_dir.path(), "rotating");
    let mut app = spawn_app_in(&config, data_dir.clone()).await;
    let before = app.issue("rotating", "alice").await;
    let files_before = files_in(&dir);
    let state_before = std::fs::read(dir.join("state.json")).unwrap();
    app.trigger_shutdown();
    app.wait_stopped().await.unwrap();
    drop(app);

    let app = spawn_app_in(&config, data_dir.clone()).await;

    let verified = app.verify("rotating", &before.token).await;
    assert!(verified.valid, "{}", verified.detail);
    assert_eq!(verified.key_id, before.key_id);
    assert_eq!(app.issue("rotating", "bob").await.key_id, before.key_id);
    assert_eq!(
        files_before,
        sorted([format!("{}.pem", before.key_id), "state.json".to_owned()])
    );
    assert_eq!(
        files_in(&dir),
        files_before,
        "no key was generated on restart"
    );
    assert_eq!(std::fs::read(dir.join("state.json")).unwrap(), state_before);
}

#[tokio::test]
async fn files_left_by_an_interrupted_rotation_are_deleted_at_start_and_the_state_is_kept() {
    let config = managed_config("ES256");
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let dir = key_dir(data_dir.path(), "rotating");
    let kid = start_and_stop(&config, &data_dir).await;
    let keys_before = state_keys(&dir);
    // A key written but never recorded, a write cut short, and a file that is not ours.
    std::fs::write(dir.join("writtenButNeverRecorded.pem"), "not recorded").unwrap();
    std::fs::write(dir.join(".x.pem.123.tmp"), "half written").unwrap();
    std::fs::write(dir.join("operator-notes.txt"), "keep me").unwrap();

    let app = spawn_app_in(&config, data_dir.clone()).await;

    assert_eq!(
        files_in(&dir),
        sorted([
            format!("{kid}.pem"),
            "operator-notes.txt".to_owned(),
            "state.json".to_owned()
        ])
    );
    assert_eq!(state_keys(&dir), keys_before);
    assert_eq!(app.issue("rotating", "alice").await.key_id, kid);
}

#[tokio::test]
async fn a_state_file_naming_a_missing_key_stops_start_up_naming_the_state_file_and_the_kid() {
    let config = managed_config("ES256");
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let dir = key_dir(data_dir.path(), "rotating");
    let kid = start_and_stop(&config, &data_dir).await;
    std::fs::remove_file(dir.join(format!("{kid}.pem"))).unwrap();
    let config = Config::from_toml(&config, "test config", data_dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));

    let started = token_authority::api::server::Server::new(config, clock);

    let Err(error) = started else {
        panic!("the service started without the key its state names");
    };
    let message = format!("{error:#}");
    let state_path = dir.join("state.json");
    assert!(
        message.contains(&state_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&kid), "{message}");
    assert_eq!(state_kids(&dir), [kid], "a failed start changes nothing");
}

#[tokio::test]
async fn managed_key_files_are_readable_only_by_the_service_user() {
    let app = spawn_app_with(&managed_config("ES256")).await;
    let managed = app.data_dir.path().join("managed");
    let dir = key_dir(app.data_dir.path(), "rotating");

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    assert_eq!(mode(&managed), 0o700);
    assert_eq!(mode(&dir), 0o700);
    let files = files_in(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    for name in files {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
    }
}

#[tokio::test]
async fn after_rotate_every_a_new_key_signs_and_the_old_one_verifies_until_its_removal() {
    // publish_ahead = max_ttl 2m + the default JWKS cache 5m = 7m; rotate_every = 10m.
    let app = spawn_app_with(&managed_config("ES256")).await;
    let dir = key_dir(app.data_dir.path(), "rotating");
    let first = app.issue("rotating", "alice").await.key_id;
    app.advance(3 * 60).await;
    let successor = state_kids(&dir)[1].clone();
    app.advance(7 * 60 - 1).await;
    // The last second of the old key, with the longest lifetime: expires at 10m + 119s.
    let last_of_old = issue_for_max_ttl(&app).await;
    assert_eq!(last_of_old.key_id, first);

    app.advance(1).await;
    let fresh = app.issue("rotating", "alice").await;

    assert_eq!(fresh.key_id, successor);
    assert_ne!(fresh.key_id, first);
    let verified = app.verify("rotating", &last_of_old.token).await;
    assert!(verified.valid, "{}", verified.detail);
    assert_eq!(verified.key_id, first);
    app.advance(118).await;
    let verified = app.verify("rotating", &last_of_old.token).await;
    assert!(verified.valid, "at 11m58s: {}", verified.detail);
    assert!(state_kids(&dir).contains(&first));

    // Removed at retirement + max_ttl (12m), even before the rotation task runs…
    app.clock.advance(Duration::from_secs(2));
    let refused = app.verify("rotating", &last_of_old.token).await;
    assert!(!refused.valid);
    assert_eq!(
        refused.failure(),
        VerifyFailure::UnknownKey,
        "{}",
        refused.detail
    );
    assert!(refused.detail.contains("removed"), "{}", refused.detail);
    // …and once it has run, the key is gone from the state and the disk.
    app.live.tick().await.unwrap();
    let refused = app.verify("rotating", &last_of_old.token).await;
    assert!(!refused.valid);
    assert_eq!(
        refused.failure(),
        VerifyFailure::UnknownKey,
        "{}",
        refused.detail
    );
    assert!(!state_kids(&dir).contains(&first));
    assert!(!dir.join(format!("{first}.pem")).exists());
}

#[tokio::test]
async fn es384_eddsa_and_hs256_managed_profiles_issue_tokens_that_verify() {
    let profiles = [("es384", "ES384"), ("eddsa", "EdDSA"), ("hs256", "HS256")];
    let config = profiles
        .iter()
        .fold("[server]\n".to_owned(), |toml, (name, alg)| {
            toml + &managed_profile(name, alg)
        });
    let app = spawn_app_with(&config).await;

    for (name, alg) in profiles {
        let issued = app.issue(name, "alice").await;
        let verified = app.verify(name, &issued.token).await;

        assert!(verified.valid, "{name}: {}", verified.detail);
        assert_eq!(issued.algorithm, alg);
        assert_eq!(header(&issued.token)["alg"], alg);
        assert_eq!(header(&issued.token)["kid"], issued.key_id.as_str());
        let files = files_in(&key_dir(app.data_dir.path(), name));
        let ext = if alg == "HS256" { "secret" } else { "pem" };
        assert_eq!(
            files,
            sorted([format!("{}.{ext}", issued.key_id), "state.json".to_owned()])
        );
    }
}

#[tokio::test]
async fn hs256_managed_keys_are_random_secrets_saved_as_secret_files_and_never_published() {
    let app = spawn_app_with(&managed_config("HS256")).await;
    let dir = key_dir(app.data_dir.path(), "rotating");

    let issued = app.issue("rotating", "alice").await;
    let jwks = app
        .client
        .clone()
        .jwks(JwksRequest {
            profile: "rotating".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // 16 random bytes in base64url, since a thumbprint would be derived from the secret.
    assert_eq!(issued.key_id.len(), 22, "{}", issued.key_id);
    let secret = std::fs::read(dir.join(format!("{}.secret", issued.key_id))).unwrap();
    assert!(secret.len() >= 32, "{} bytes", secret.len());
    assert!(jwks.keys.is_empty(), "{:?}", jwks.keys);
}

#[tokio::test]
async fn an_es256_managed_key_id_is_the_rfc_7638_thumbprint_of_its_public_jwk() {
    let app = spawn_app_with(&managed_config("ES256")).await;

    let jwks = app
        .client
        .clone()
        .jwks(JwksRequest {
            profile: "rotating".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let issued = app.issue("rotating", "alice").await;

    assert_eq!(jwks.keys.len(), 1, "{:?}", jwks.keys);
    let jwk = &jwks.keys[0];
    assert_eq!((jwk.kty.as_str(), jwk.crv.as_str()), ("EC", "P-256"));
    // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
    let canonical = format!(
        r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk.crv, jwk.x, jwk.y
    );
    let thumbprint =
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref());
    assert_eq!(jwk.kid, thumbprint);
    assert_eq!(issued.key_id, thumbprint);
    // The published key checks the token in another JOSE implementation.
    let point = [vec![4u8], unb64(&jwk.x), unb64(&jwk.y)].concat();
    let key = ES256PublicKey::from_bytes(&point).unwrap();
    key.verify_token::<NoCustomClaims>(&issued.token, None)
        .unwrap();
}
