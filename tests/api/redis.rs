//! The Redis store against a real `redis-server` on a free loopback port: two service
//! instances sharing it, races across both, and Redis stopped and started under a running
//! service. `.ci/run` installs redis-server from Debian's packages when it is missing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use token_authority::proto::revoke_request::Target;
use token_authority::proto::{IssuePairResponse, VerifyFailure, VerifyRequest};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::{TestApp, assert_status, spawn_app_with};
use crate::lifecycle::{
    failure, futures_join, issue_pair, lifecycle_config, refresh, refresh_call, revoke,
};

/// A `redis-server` on 127.0.0.1 with no persistence, stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    /// Stops the server (its data is gone: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (apt-get install -y redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn store_table(&self) -> String {
        format!(
            "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"",
            self.port
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn two_instances(redis: &RedisServer) -> (TestApp, TestApp) {
    let config = lifecycle_config(&redis.store_table());
    (spawn_app_with(&config).await, spawn_app_with(&config).await)
}

fn access_of(pair: &IssuePairResponse) -> &str {
    &pair.access.as_ref().unwrap().token
}

fn refresh_of(pair: &IssuePairResponse) -> &str {
    &pair.refresh.as_ref().unwrap().token
}

/// Waits (at most 20 s) until health reports `want` for the store.
async fn store_health_becomes(app: &TestApp, want: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = app
            .health
            .clone()
            .check(HealthCheckRequest {
                service: "tokenauthority.v1.Store".into(),
            })
            .await
            .map(|a| a.into_inner().status);
        if status.as_ref().ok() == Some(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store health stayed {status:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_revocation_on_one_instance_is_refused_by_the_other() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let pair = issue_pair(&a, "access", "42", json!({})).await;
    let other = issue_pair(&a, "access", "43", json!({})).await;
    assert!(b.verify("access", access_of(&pair)).await.valid);

    let id = pair.access.as_ref().unwrap().token_id.clone();
    revoke(&a, "access", Target::TokenId(id)).await.unwrap();
    assert_eq!(
        failure(&b, "access", access_of(&pair)).await,
        VerifyFailure::Revoked
    );
    assert!(b.verify("access", access_of(&other)).await.valid);

    revoke(&b, "access", Target::Subject("43".into()))
        .await
        .unwrap();
    assert_eq!(
        failure(&a, "access", access_of(&other)).await,
        VerifyFailure::Revoked
    );

    revoke(&b, "refresh", Target::Token(refresh_of(&pair).into()))
        .await
        .unwrap();
    let status = refresh(&a, "access", refresh_of(&pair)).await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, "refused (revoked)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_use_race_across_two_instances_has_exactly_one_winner() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let login = a.issue("login", "42").await;
    let calls = (0..16).map(|i| {
        let mut client = if i % 2 == 0 {
            a.client.clone()
        } else {
            b.client.clone()
        };
        let token = login.token.clone();
        async move {
            client
                .verify(VerifyRequest {
                    token,
                    profile: "login".into(),
                    audience: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = futures_join(calls).await;
    assert_eq!(answers.iter().filter(|a| a.valid).count(), 1);
    assert!(
        answers
            .iter()
            .filter(|a| !a.valid)
            .all(|a| a.failure() == VerifyFailure::AlreadyUsed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_race_across_two_instances_obeys_the_grace_rule() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let pair = issue_pair(&a, "access", "42", json!({})).await;
    let token = refresh_of(&pair).to_owned();
    let calls = (0..8).map(|i| {
        let client = if i % 2 == 0 { &a.client } else { &b.client };
        refresh_call(client, "access", &token)
    });
    let answers: Vec<IssuePairResponse> = futures_join(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for answer in &answers {
        assert_eq!(refresh_of(answer), refresh_of(&answers[0]));
        assert_eq!(access_of(answer), access_of(&answers[0]));
    }
    // After the grace, the spent token is a stolen one: the family goes, on both instances.
    a.advance(10).await;
    b.advance(10).await;
    let status = refresh(&b, "access", &token).await.unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "whole family is now revoked",
    );
    assert_eq!(
        failure(&a, "access", access_of(&answers[0])).await,
        VerifyFailure::Revoked
    );
    let status = refresh(&a, "access", refresh_of(&answers[0]))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "refused (revoked)");
}

#[tokio::test]
async fn with_redis_stopped_stateful_calls_fail_closed_and_recover_when_it_returns() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(&lifecycle_config(&redis.store_table())).await;
    store_health_becomes(&app, 1).await;
    let pair = issue_pair(&app, "access", "42", json!({})).await;
    let plain = app.issue("plain", "42").await;
    assert!(app.verify("access", access_of(&pair)).await.valid);

    redis.stop();
    let status = app
        .client
        .clone()
        .verify(VerifyRequest {
            token: access_of(&pair).into(),
            profile: "access".into(),
            audience: String::new(),
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unavailable,
        "the token store (redis) is unavailable",
    );
    let status = refresh(&app, "access", refresh_of(&pair))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let status = revoke(&app, "access", Target::Subject("42".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    // Stateless calls do not need Redis.
    assert!(app.verify("plain", &plain.token).await.valid);
    let fresh = issue_pair(&app, "access", "42", json!({})).await;
    store_health_becomes(&app, 2).await;

    redis.restart();
    store_health_becomes(&app, 1).await;
    assert!(app.verify("access", access_of(&fresh)).await.valid);
    let renewed = refresh(&app, "access", refresh_of(&fresh)).await.unwrap();
    assert!(app.verify("access", access_of(&renewed)).await.valid);
}

#[tokio::test]
async fn redis_keys_expire_with_the_latest_exp_they_guard() {
    use ::redis::AsyncCommands as _;
    let redis = RedisServer::start();
    let app = spawn_app_with(&lifecycle_config(&redis.store_table())).await;
    let pair = issue_pair(&app, "access", "42", json!({})).await;
    let id = pair.access.as_ref().unwrap().token_id.clone();
    revoke(&app, "access", Target::TokenId(id.clone()))
        .await
        .unwrap();
    revoke(&app, "access", Target::Subject("42".into()))
        .await
        .unwrap();
    let login = app.issue("login", "42").await;
    assert!(app.verify("login", &login.token).await.valid);

    let client = ::redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys("token-authority:*").await.unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in keys {
        let ttl: i64 = conn.ttl(&key).await.unwrap();
        // access tokens live at most 5 minutes, login tokens 30 seconds.
        let most = if key.contains("/login/") { 31 } else { 301 };
        assert!((1..=most).contains(&ttl), "{key}: ttl {ttl}");
    }
}

#[tokio::test]
async fn two_service_processes_on_one_redis_share_revocations_and_single_use() {
    use token_authority::proto::token_authority_client::TokenAuthorityClient;
    use token_authority::proto::{IssueRequest, RevokeRequest};
    let redis = RedisServer::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for dir in &dirs {
        std::fs::write(
            dir.path().join("hs256.secret"),
            crate::helpers::HS256_SECRET,
        )
        .unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, lifecycle_config(&redis.store_table())).unwrap();
        let server = crate::cli::serve(&config, dir.path());
        let url = format!("http://{}", server.addr);
        clients.push(TokenAuthorityClient::connect(url).await.unwrap());
        servers.push(server);
    }
    let verify = |profile: &str, token: &str| VerifyRequest {
        token: token.into(),
        profile: profile.into(),
        audience: String::new(),
    };
    let issue = |profile: &str| IssueRequest {
        profile: profile.into(),
        subject: "42".into(),
        ..Default::default()
    };
    let access = clients[0]
        .issue(issue("access"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        clients[1]
            .verify(verify("access", &access.token))
            .await
            .unwrap()
            .into_inner()
            .valid
    );
    clients[0]
        .revoke(RevokeRequest {
            profile: "access".into(),
            target: Some(Target::TokenId(access.token_id.clone())),
        })
        .await
        .unwrap();
    let answer = clients[1]
        .verify(verify("access", &access.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.failure(), VerifyFailure::Revoked);

    let login = clients[1].issue(issue("login")).await.unwrap().into_inner();
    assert!(
        clients[0]
            .verify(verify("login", &login.token))
            .await
            .unwrap()
            .into_inner()
            .valid
    );
    let answer = clients[1]
        .verify(verify("login", &login.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.failure(), VerifyFailure::AlreadyUsed);
}
