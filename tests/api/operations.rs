//! What operators rely on: health, reflection, logs, signals, the CLI and the embedded default.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use token_authority::api::server::SERVICE_NAME;
use tokio_stream::StreamExt as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_serving_overall_and_for_the_token_service() {
    let app = spawn_app().await;
    for service in ["", SERVICE_NAME] {
        let answer = app
            .health
            .clone()
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn shutdown_flips_health_to_not_serving_lets_open_calls_finish_and_stops() {
    let mut app = spawn_app().await;
    let mut watch = app
        .health
        .clone()
        .watch(HealthCheckRequest {
            service: SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    app.trigger_shutdown();
    // The watch call was open when shutdown began; it is drained, not cut, and sees the flip.
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    drop(watch);
    app.wait_stopped()
        .await
        .expect("the server stops cleanly once open calls are done");
}

#[tokio::test]
async fn reflection_lists_the_services_and_describes_the_api_without_a_proto_file() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let ask = |req: MessageRequest| {
        tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(req),
        }])
    };
    let mut answers = client
        .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [SERVICE_NAME, "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "tokenauthority.v1.KeyAdmin"),
        "the admin service is off in this config, so reflection must not offer it: {names:?}"
    );

    // The descriptors of our API and of the well-known types it imports are all served, so
    // grpcurl can turn JSON into requests with google.protobuf.Struct and Duration.
    for symbol in [
        SERVICE_NAME,
        "google.protobuf.Struct",
        "google.protobuf.Duration",
    ] {
        let mut answers = client
            .server_reflection_info(ask(MessageRequest::FileContainingSymbol(symbol.into())))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.next().await.unwrap().unwrap().message_response;
        assert!(
            matches!(answer, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
            "{symbol}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn logs_name_each_call_and_its_token_id_but_never_the_token_or_a_secret() {
    let app = spawn_app().await;
    let issued = app.issue("hs256", "log-test-subject").await;
    let refused = app.verify("hs256", &format!("{}x", issued.token)).await;
    assert!(!refused.valid);
    let logs = captured_logs();
    let issue_line = logs
        .lines()
        .find(|l| l.contains(&issued.token_id) && l.contains("call finished"))
        .expect("the Issue call is logged with its jti");
    for field in [
        "rpc=\"Issue\"",
        "profile=\"hs256\"",
        "kid=\"hs256-key\"",
        "alg=\"HS256\"",
        "outcome=\"issued\"",
        "latency_us=",
    ] {
        assert!(
            issue_line.contains(field),
            "{field} missing from {issue_line}"
        );
    }
    assert!(
        logs.contains("reason=\"bad_signature\""),
        "refusals are logged with their reason"
    );
    let (_, signature) = issued.token.rsplit_once('.').unwrap();
    let payload_part = issued.token.split('.').nth(1).unwrap();
    assert!(
        !logs.contains(signature),
        "a token signature reached the log"
    );
    assert!(
        !logs.contains(payload_part),
        "a token payload reached the log"
    );
    assert!(
        !logs.contains("log-test-subject"),
        "a subject (claim value) reached the log"
    );
    assert!(
        !logs.contains(std::str::from_utf8(HS256_SECRET).unwrap()),
        "a secret reached the log"
    );
}

// ---- the binary, as an operator runs it ---------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_token-authority");

struct Running {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

/// Starts `token-authority serve ARGS…` and waits for its "listening" line.
fn start(args: &[&str]) -> Running {
    start_with(&[], args)
}

/// Starts `token-authority GLOBAL… serve ARGS…` and waits for its "listening" line.
fn start_with(global: &[&str], args: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(global)
        .arg("serve")
        .args(args)
        // The embedded default serves JWKS on 127.0.0.1:8080; tests run side by side.
        .args(["--http-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server logs a listening line");
        if line.contains("listening") {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                break json["addr"].as_str().unwrap().to_owned();
            }
            let addr = line
                .split("addr=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            break addr.to_owned();
        }
    };
    Running { child, addr, lines }
}

fn terminate(running: Running) -> (std::process::ExitStatus, Vec<String>) {
    signal(running, libc::SIGTERM)
}

/// Sends `signal`, waits for the exit, and returns every line logged after "listening".
fn signal(mut running: Running, signal: libc::c_int) -> (std::process::ExitStatus, Vec<String>) {
    let pid = libc::pid_t::try_from(running.child.id()).unwrap();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let status = running.child.wait().unwrap();
    // The reader thread ends at end of output, which closes the channel: every line is read.
    let rest: Vec<String> = running.lines.iter().collect();
    (status, rest)
}

async fn client(
    addr: &str,
) -> token_authority::proto::token_authority_client::TokenAuthorityClient<tonic::transport::Channel>
{
    token_authority::proto::token_authority_client::TokenAuthorityClient::connect(format!(
        "http://{addr}"
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_default_creates_keys_once_and_keeps_verifying_across_restarts() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap();

    let first = start(&["--listen", "127.0.0.1:0", "--data-dir", data_arg]);
    assert_ne!(
        first.addr, "127.0.0.1:0",
        "port 0 is resolved to the bound port in the log"
    );
    let issued = client(&first.addr)
        .await
        .issue(token_authority::proto::IssueRequest {
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sso = client(&first.addr)
        .await
        .login_url(token_authority::proto::LoginUrlRequest {
            profile: "sso".into(),
            subject: "alice".into(),
            next: "/home".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(sso.url.contains("token="), "{}", sso.url);
    let (status, _) = terminate(first);
    assert!(status.success(), "SIGTERM exits 0: {status:?}");

    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.path().join("managed/default/state.json")).unwrap(),
    )
    .unwrap();
    let managed_kid = state["keys"][0]["kid"].as_str().unwrap();
    assert_eq!(
        managed_kid, issued.key_id,
        "the default profile signs with its managed key"
    );
    let managed_file = format!("managed/default/{managed_kid}.pem");
    for file in [
        managed_file.as_str(),
        "managed/default/state.json",
        "default-ed25519.pem",
        "default-hs256.secret",
        "audit.key",
        "tokens.redb",
    ] {
        let mode = std::fs::metadata(data.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file} is private");
    }

    let second = start(&["--listen", "127.0.0.1:0", "--data-dir", data_arg]);
    let mut c = client(&second.addr).await;
    for (profile, token) in [("default", &issued.token), ("sso", &sso.token)] {
        let answer = c
            .verify(token_authority::proto::VerifyRequest {
                token: token.clone(),
                profile: profile.into(),
                audience: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            answer.valid,
            "{profile}: a token from before the restart still verifies: {}",
            answer.detail
        );
    }
    let (status, _) = terminate(second);
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flips_health_drains_and_exits_zero_and_healthcheck_follows_it() {
    let data = tempfile::tempdir().unwrap();
    let running = start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);

    let ok = Command::new(BIN)
        .args(["healthcheck", "--addr", &running.addr])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "healthcheck on a serving server exits 0"
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "SERVING");
    let ok = Command::new(BIN)
        .args([
            "healthcheck",
            "--addr",
            &running.addr,
            "--service",
            SERVICE_NAME,
        ])
        .output()
        .unwrap();
    assert!(ok.status.success());

    let addr = running.addr.clone();
    let (status, lines) = terminate(running);
    assert_eq!(status.code(), Some(0));
    let text = lines.join("\n");
    assert!(
        text.contains("NOT_SERVING"),
        "the log tells health flipped first: {text}"
    );
    assert!(text.contains("stopped"), "{text}");

    let down = Command::new(BIN)
        .args(["healthcheck", "--addr", &addr, "--timeout", "2s"])
        .output()
        .unwrap();
    assert!(
        !down.status.success(),
        "healthcheck on a stopped server fails"
    );
}

#[test]
fn a_bad_config_file_stops_start_up_naming_the_file_the_key_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[keys]]\nid = \"sso-2026\"\nalgorithm = \"HS256\"\nsecret_env = \"TA_TEST_SHORT_SECRET\"\n\n[profiles.default]\nsigning_key = \"sso-2026\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .env("TA_TEST_SHORT_SECRET", "too-short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("sso-2026"), "{stderr}");
    assert!(
        stderr.contains("9 bytes") && stderr.contains("32"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_one_object_per_line_and_sigint_stops_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let running = start_with(
        &["--log-format", "json"],
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    );
    let issued = client(&running.addr)
        .await
        .issue(token_authority::proto::IssueRequest {
            profile: "eddsa".into(),
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (status, lines) = signal(running, libc::SIGINT);
    assert_eq!(status.code(), Some(0), "SIGINT exits 0 too");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let call = events
        .iter()
        .find(|e| e["message"] == "call finished")
        .expect("the Issue call is logged");
    assert_eq!(call["rpc"], "Issue");
    assert_eq!(call["profile"], "eddsa");
    assert_eq!(call["alg"], "EdDSA");
    assert_eq!(call["kid"], "default-ed25519");
    assert_eq!(call["outcome"], "issued");
    assert_eq!(call["jti"], issued.token_id.as_str());
    assert!(call["latency_us"].is_u64());
    assert!(events.iter().any(|e| e["message"] == "stopped"));
}

/// Waits for a log line containing `needle` and returns it.
fn wait_for_line(running: &Running, needle: &str) -> String {
    loop {
        let line = running
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_good_config_and_keeps_serving_the_old_one_when_the_new_one_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let base = format!(
        "[[keys]]\nid = \"es\"\nalgorithm = \"ES256\"\nprivate_key_file = {:?}\n\n[profiles.default]\nsigning_key = \"es\"\n",
        fixture("ec-p256.pem")
    );
    std::fs::write(&config, &base).unwrap();
    let running = start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let mut c = client(&running.addr).await;
    let issue = |profile: &str| token_authority::proto::IssueRequest {
        profile: profile.into(),
        subject: "alice".into(),
        ..Default::default()
    };
    assert_eq!(
        c.issue(issue("second")).await.unwrap_err().code(),
        tonic::Code::NotFound
    );

    std::fs::write(
        &config,
        base.clone() + "\n[profiles.second]\nsigning_key = \"es\"\n",
    )
    .unwrap();
    let pid = libc::pid_t::try_from(running.child.id()).unwrap();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for_line(&running, "configuration reloaded");
    assert_eq!(
        c.issue(issue("second")).await.unwrap().into_inner().key_id,
        "es"
    );

    std::fs::write(
        &config,
        base + "\n[profiles.second]\nsigning_key = \"gone\"\n",
    )
    .unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let refused = wait_for_line(&running, "reload refused");
    assert!(
        refused.contains("service.toml") && refused.contains("\"gone\""),
        "{refused}"
    );
    assert_eq!(
        c.issue(issue("second")).await.unwrap().into_inner().key_id,
        "es"
    );
    let health = Command::new(BIN)
        .args(["healthcheck", "--addr", &running.addr])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "still SERVING after a refused reload"
    );

    let (status, _) = terminate(running);
    assert_eq!(status.code(), Some(0));
}
