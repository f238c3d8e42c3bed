//! The operator subcommands, run as the real binary: `keys generate`, `keys list`, `config check`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{IssueRequest, VerifyRequest};

use crate::helpers::{ALGORITHMS, paths_below};

const BIN: &str = env!("CARGO_BIN_EXE_token-authority");

/// Runs `token-authority ARGS…` without the environment variables that would change its defaults.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("TOKEN_AUTHORITY_CONFIG")
        .env_remove("TOKEN_AUTHORITY_DATA_DIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `config check --config CONFIG --data-dir DATA`.
pub fn config_check(config: &Path, data: &Path) -> Output {
    run(&[
        "config",
        "check",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// The file names in `dir`, recursively, relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    paths_below(dir)
        .iter()
        .map(|path| path.strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

/// `token-authority serve`, killed (SIGKILL) when dropped so a failing test leaves no server
/// behind; the kill -9 tests of the stores rely on that.
pub struct Serving {
    child: Child,
    pub addr: String,
    /// Its standard output up to and including the "listening" line.
    pub started_log: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Serving {
    /// The next line it writes to standard output (at most a minute's wait).
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server keeps logging")
    }

    /// Sends SIGTERM, waits for the process to end, and returns every line it wrote after
    /// those already read.
    pub fn terminate(self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let mut rest = Vec::new();
        // The reader thread ends at end of file, when the process has closed its stdout.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(60)) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --config CONFIG --data-dir DATA --listen 127.0.0.1:0` and waits for its
/// "listening" line (as `operations::start` does).
pub fn serve(config: &Path, data: &Path) -> Serving {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .env_remove("TOKEN_AUTHORITY_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut serving = Serving {
        child,
        addr: String::new(),
        started_log: Vec::new(),
        lines,
    };
    serving.addr = loop {
        let line = serving.next_line();
        serving.started_log.push(line.clone());
        if line.contains("listening") {
            let addr = line.split("addr=").nth(1).unwrap();
            break addr.split_whitespace().next().unwrap().to_owned();
        }
    };
    serving
}

/// `keys generate --algorithm ALG --out FILE` must succeed; returns its stdout.
fn generate(alg: &str, file: &Path) -> String {
    let out = run(&[
        "keys",
        "generate",
        "--algorithm",
        alg,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{alg}: {}", stderr(&out));
    stdout(&out)
}

/// The `[[keys]]` snippet at the end of `keys generate` output, parsed.
fn snippet(report: &str) -> (String, toml::Table) {
    let text = &report[report.find("[[keys]]").expect("a [[keys]] snippet")..];
    let table: toml::Table = toml::from_str(text).unwrap();
    let key = table["keys"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    (text.to_owned(), key)
}

/// The value after `label` on its line of a report.
fn field<'a>(report: &'a str, label: &str) -> Option<&'a str> {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}

/// RFC 7638, computed here from the printed JWK rather than by the code under test.
fn thumbprint(jwk: &Value) -> String {
    use base64::Engine as _;
    let members: &[&str] = match jwk["kty"].as_str().unwrap() {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        other => panic!("unexpected kty {other}"),
    };
    let mut canonical = serde_json::Map::new();
    for m in members {
        canonical.insert((*m).to_owned(), jwk[*m].clone());
    }
    let json = serde_json::to_string(&Value::Object(canonical)).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, json.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_generate_makes_a_private_key_for_every_algorithm_that_config_check_and_serve_load() {
    let dir = tempfile::tempdir().unwrap();
    // RSA keys take seconds each in a debug build; make all twelve at once.
    let reports: Vec<(String, String)> = std::thread::scope(|scope| {
        let jobs: Vec<_> = ALGORITHMS
            .iter()
            .map(|alg| {
                let file = dir.path().join(format!("{}.key", alg.to_lowercase()));
                scope.spawn(move || (alg.to_string(), generate(alg, &file)))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });

    let mut config = String::new();
    for (alg, report) in &reports {
        let file = dir.path().join(format!("{}.key", alg.to_lowercase()));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{alg}: the key file is private");
        let material = std::fs::read_to_string(&file).unwrap();
        assert!(
            !report.contains(material.trim()) && !report.contains("PRIVATE KEY"),
            "{alg}: the key itself is never printed:\n{report}"
        );
        assert_eq!(field(report, "algorithm:"), Some(alg.as_str()));

        let (text, key) = snippet(report);
        assert_eq!(key["algorithm"].as_str(), Some(alg.as_str()), "{text}");
        let id = key["id"].as_str().unwrap().to_owned();
        if alg.starts_with("HS") {
            assert_eq!(
                key["secret_file"].as_str(),
                Some(file.to_str().unwrap()),
                "{text}"
            );
            assert!(report.contains("yours to choose"), "{report}");
            assert!(!report.contains("public JWK:"), "{report}");
        } else {
            assert_eq!(
                key["private_key_file"].as_str(),
                Some(file.to_str().unwrap()),
                "{text}"
            );
            let jwk: Value = serde_json::from_str(field(report, "public JWK:").unwrap()).unwrap();
            assert!(jwk.get("d").is_none(), "{alg}: the JWK is public only");
            assert_eq!(jwk["alg"], alg.as_str());
            let kid = field(report, "kid:").unwrap();
            assert_eq!(
                kid,
                thumbprint(&jwk),
                "{alg}: the kid is the RFC 7638 thumbprint"
            );
            assert_eq!(jwk["kid"], kid);
            assert_eq!(id, kid, "{alg}: the snippet uses the kid");
        }
        config.push_str(&text);
        config.push_str(&format!(
            "\n[profiles.{}]\nsigning_key = {}\n\n",
            alg.to_lowercase(),
            toml::Value::String(id)
        ));
    }
    let config_file = dir.path().join("generated.toml");
    std::fs::write(&config_file, &config).unwrap();
    let data = tempfile::tempdir().unwrap();

    let check = config_check(&config_file, data.path());
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let listing = stdout(&check);
    for alg in ALGORITHMS {
        assert!(
            listing.contains(&format!("  {}\n", alg.to_lowercase())),
            "profile of {alg} listed:\n{listing}"
        );
    }

    let server = serve(&config_file, data.path());
    let mut client = TokenAuthorityClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    for alg in ALGORITHMS {
        let profile = alg.to_lowercase();
        let issued = client
            .issue(IssueRequest {
                profile: profile.clone(),
                subject: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(issued.algorithm, alg);
        let verified = client
            .verify(VerifyRequest {
                token: issued.token,
                profile,
                audience: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(verified.valid, "{alg}: {}", verified.detail);
        assert_eq!(verified.subject, "alice");
    }
}

#[test]
fn keys_generate_refuses_to_overwrite_a_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("existing.pem");
    std::fs::write(&file, "keep me").unwrap();
    let path = file.to_str().unwrap();

    let refused = run(&["keys", "generate", "--algorithm", "ES256", "--out", path]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert!(stdout(&refused).is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    let forced = run(&[
        "keys",
        "generate",
        "--algorithm",
        "ES256",
        "--out",
        path,
        "--force",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let pem = pem::parse(std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(pem.tag(), "PRIVATE KEY");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn keys_generate_refuses_bits_for_an_algorithm_that_is_not_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("es256.pem");
    let out = run(&[
        "keys",
        "generate",
        "--algorithm",
        "ES256",
        "--bits",
        "2048",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("--bits") && message.contains("ES256"),
        "{message}"
    );
    assert!(!file.exists());

    let odd = run(&[
        "keys",
        "generate",
        "--algorithm",
        "RS256",
        "--bits",
        "1024",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(odd.status.code(), Some(1));
    assert!(
        stderr(&odd).contains("2048, 3072 or 4096"),
        "{}",
        stderr(&odd)
    );
    assert!(!file.exists());
}

#[test]
fn keys_generate_to_stdout_prints_only_the_private_key() {
    for alg in ["ES256", "EdDSA"] {
        let out = run(&["keys", "generate", "--algorithm", alg, "--out", "-"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let blocks = pem::parse_many(&text).unwrap();
        assert_eq!(blocks.len(), 1, "{text}");
        assert_eq!(blocks[0].tag(), "PRIVATE KEY");
        assert!(text.trim_start().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(text.trim_end().ends_with("-----END PRIVATE KEY-----"));
        // What describes the key goes to stderr, where it cannot end up in a redirected file.
        let info = stderr(&out);
        assert!(
            info.contains("kid:") && info.contains("public JWK:"),
            "{info}"
        );
        assert!(!info.contains("PRIVATE KEY"), "{info}");
    }
    let secret = run(&["keys", "generate", "--algorithm", "HS256", "--out", "-"]);
    assert!(secret.status.success());
    assert_eq!(
        stdout(&secret).trim_end().len(),
        43,
        "32 bytes as base64url"
    );
}

#[test]
fn keys_generate_without_out_refuses_and_prints_nothing_secret() {
    for alg in ["ES256", "HS256", "RS256"] {
        let out = run(&["keys", "generate", "--algorithm", alg]);
        assert_eq!(out.status.code(), Some(1), "{alg}");
        assert!(out.stdout.is_empty(), "{alg}: {}", stdout(&out));
        let message = stderr(&out);
        assert!(
            message.contains("--out FILE") && message.contains("--out -"),
            "{message}"
        );
        assert!(!message.contains("PRIVATE KEY"), "{message}");
    }
}

#[test]
fn config_check_on_a_broken_config_fails_as_serve_does_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    // The first key would be generated on first start; the second cannot load.
    std::fs::write(
        &config,
        "[[keys]]\nid = \"fresh\"\nalgorithm = \"ES256\"\nprivate_key_file = \"fresh.pem\"\ngenerate = true\n\n\
         [[keys]]\nid = \"sso-2026\"\nalgorithm = \"HS256\"\nsecret_file = \"short.secret\"\n\n\
         [profiles.default]\nsigning_key = \"fresh\"\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("short.secret"), "too-short").unwrap();
    let before = tree(data.path());

    let out = config_check(&config, data.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let message = stderr(&out);
    let error = message.lines().last().unwrap();
    assert!(error.starts_with("error: "), "{message}");
    for part in ["broken.toml", "\"sso-2026\"", "9 bytes", "32"] {
        assert!(error.contains(part), "{part} missing from {error}");
    }
    assert_eq!(
        tree(data.path()),
        before,
        "config check wrote into the data dir"
    );

    // `serve` on a copy of the data dir stops with the very same message.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        data.path().join("short.secret"),
        copy.path().join("short.secret"),
    )
    .unwrap();
    let served = run(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        copy.path().to_str().unwrap(),
    ]);
    assert_eq!(served.status.code(), Some(1));
    let serve_error = stderr(&served);
    assert_eq!(
        serve_error.lines().last().unwrap(),
        error.replace(data.path().to_str().unwrap(), copy.path().to_str().unwrap())
    );
    // `serve` checks the whole configuration before it writes anything, too.
    assert!(
        !copy.path().join("fresh.pem").exists(),
        "serve wrote a key for a configuration it refused"
    );
}

#[test]
fn config_check_never_creates_a_generated_key_even_at_an_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let absolute = dir.path().join("keys").join("absolute.pem");
    let config = dir.path().join("abs.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"abs\"\nalgorithm = \"EdDSA\"\nprivate_key_file = {}\ngenerate = true\n\n[profiles.default]\nsigning_key = \"abs\"\n",
            toml::Value::String(absolute.to_str().unwrap().to_owned())
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = config_check(&config, &data);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(
        listing.contains("does not exist yet") && listing.contains("absolute.pem"),
        "{listing}"
    );
    assert!(!absolute.exists() && !absolute.parent().unwrap().exists());
    assert!(!data.exists());
}

#[test]
fn config_check_on_the_embedded_default_lists_its_profiles_and_leaves_the_data_dir_empty() {
    let data = tempfile::tempdir().unwrap();
    let out = run(&[
        "config",
        "check",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.contains("embedded default"), "{listing}");
    for profile in ["default", "eddsa", "sso"] {
        assert!(
            listing.contains(&format!("\n  {profile}\n")),
            "{profile} missing from:\n{listing}"
        );
    }
    assert!(listing.contains("listen:"), "{listing}");
    assert!(listing.contains("admin:"), "{listing}");
    assert!(
        listing
            .contains("callers:       none (calls are not authenticated; served on loopback only)"),
        "{listing}"
    );
    // Lifetimes read as the file writes them, and no profile seems to verify with nothing.
    assert!(listing.contains("rotate_every 24h,"), "{listing}");
    assert!(!listing.contains("1day"), "{listing}");
    assert!(!listing.contains("verify keys:   -"), "{listing}");
    assert!(
        listing.contains("verify keys:   its signing keys"),
        "{listing}"
    );
    assert!(tree(data.path()).is_empty(), "{:?}", tree(data.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_list_shows_the_active_managed_key_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("admin.toml");
    std::fs::write(
        &config,
        "[server]\nadmin = true\n\n[profiles.x]\nissuer = \"https://auth.test\"\n\n[profiles.x.rotation]\nalgorithm = \"ES256\"\nrotate_every = \"1h\"\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = serve(&config, data.path());

    let text = run(&["keys", "list", "--addr", &server.addr]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let listing = stdout(&text);
    for part in [
        "admin.toml",
        "profile x (managed keys)",
        "state:      active",
        "source:     managed",
        "algorithm:  ES256",
        "remove:     ",
        "public JWK: {",
    ] {
        assert!(listing.contains(part), "{part} missing from:\n{listing}");
    }

    let json = run(&[
        "keys",
        "list",
        "--addr",
        &server.addr,
        "--profile",
        "x",
        "--json",
    ]);
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        doc["config_origin"]
            .as_str()
            .unwrap()
            .ends_with("admin.toml")
    );
    assert!(doc["last_reload_error"].is_null());
    let profiles = doc["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0]["profile"], "x");
    assert_eq!(profiles[0]["managed"], true);
    let active: Vec<&Value> = profiles[0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{doc:#}");
    let key = active[0];
    let kid = key["key_id"].as_str().unwrap();
    assert_eq!(key["public_jwk"]["kid"], kid);
    assert_eq!(kid, thumbprint(&key["public_jwk"]));
    let active_at = key["active_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(active_at).is_ok(), "{active_at}");
    assert!(active_at.ends_with('Z'));

    // config check reads the managed state serve wrote, and writes nothing itself.
    let before = tree(data.path());
    let check = config_check(&config, data.path());
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let report = stdout(&check);
    assert!(report.contains("admin:         on"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains(kid) && l.contains("active")),
        "{report}"
    );
    assert_eq!(tree(data.path()), before);

    let missing = run(&["keys", "list", "--addr", &server.addr, "--profile", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nope"), "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_list_against_a_server_without_admin_says_how_to_enable_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plain.toml");
    std::fs::write(
        &config,
        "[[keys]]\nid = \"k\"\nalgorithm = \"EdDSA\"\nprivate_key_file = \"k.pem\"\ngenerate = true\n\n[profiles.default]\nsigning_key = \"k\"\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = serve(&config, data.path());

    let out = run(&["keys", "list", "--addr", &server.addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let message = stderr(&out);
    assert!(
        message.contains("admin service is disabled") && message.contains("admin = true"),
        "{message}"
    );
}

#[test]
fn serve_on_a_busy_port_fails_before_writing_any_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let out = run(&[
        "serve",
        "--listen",
        &addr,
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
    assert!(
        !data_dir.exists() || tree(&data_dir).is_empty(),
        "{:?}",
        tree(&data_dir)
    );
}

#[test]
fn serve_with_a_host_name_for_listen_says_to_write_an_ip_address() {
    let out = run(&["serve", "--listen", "localhost:50061"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("is not IP:PORT"), "{err}");
    assert!(
        err.contains("host names such as localhost are not resolved"),
        "{err}"
    );
}

#[test]
fn healthcheck_refuses_https_without_a_ca_instead_of_checking_in_plaintext() {
    let out = run(&["healthcheck", "--addr", "https://127.0.0.1:50051"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("https needs --ca-file"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn the_readme_shows_the_unknown_field_message_config_check_prints_today() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.default]\nsigning_key = \"main\"\nttl_max = \"1h\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = config_check(&config, &data);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    let listed = message
        .lines()
        .find(|l| l.starts_with("unknown field `ttl_max`"))
        .unwrap_or_else(|| panic!("{message}"));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // Every profile field, as serve and config check list them, in the README's sample.
    assert!(
        readme.lines().any(|l| l == listed),
        "README.md's sample should read:\n{listed}"
    );
}

#[test]
fn config_check_on_a_bare_number_for_a_lifetime_says_how_to_write_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret_file = \"k.secret\"\ngenerate = true\n\n\
         [profiles.default]\nsigning_key = \"k\"\nmax_ttl = 3600\n",
    )
    .unwrap();
    let out = config_check(&config, dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("max_ttl = 3600"), "{err}");
    assert!(
        err.contains("write a duration as text, such as \"3600s\""),
        "{err}"
    );
}

#[test]
fn the_log_format_flag_is_listed_once_in_the_top_level_help_not_in_every_command() {
    let top = stdout(&run(&["--help"]));
    assert!(top.contains("--log-format"), "{top}");
    for command in [
        &["serve", "--help"][..],
        &["keys", "generate", "--help"],
        &["config", "check", "--help"],
    ] {
        let help = stdout(&run(command));
        assert!(help.contains("Usage:"), "{help}");
        assert!(!help.contains("--log-format"), "{command:?}: {help}");
    }
    // It still goes before the command, as the README shows.
    let out = run(&["--log-format", "json", "config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A config serving TLS from `dir` (server certificate, key and client CA from `pki`), with
/// KeyAdmin on and one generated EdDSA key.
fn tls_config_file(dir: &Path, pki: &crate::pki::TestPki) -> std::path::PathBuf {
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nadmin = true\n{}\n[[keys]]\nid = \"k\"\nalgorithm = \"EdDSA\"\nprivate_key_file = \"k.pem\"\ngenerate = true\n\n[profiles.default]\nsigning_key = \"k\"\n",
            pki.files.toml()
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_and_keys_list_speak_tls_with_a_ca_file_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::pki::TestPki::new(dir.path(), true);
    let config = tls_config_file(dir.path(), &pki);
    let data = tempfile::tempdir().unwrap();
    let server = serve(&config, data.path());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca.cert_pem).unwrap();
    let ca = ca.to_str().unwrap();

    let health = run(&["healthcheck", "--addr", &server.addr, "--ca-file", ca]);
    assert_eq!(health.status.code(), Some(0), "{}", stderr(&health));
    assert_eq!(stdout(&health).trim(), "SERVING");

    let plaintext = run(&["healthcheck", "--addr", &server.addr, "--timeout", "2s"]);
    assert_eq!(plaintext.status.code(), Some(1), "plaintext was answered");
    assert!(stdout(&plaintext).is_empty());

    let other = crate::pki::TestCa::new("another CA");
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, &other.cert_pem).unwrap();
    let wrong_ca = run(&[
        "healthcheck",
        "--addr",
        &server.addr,
        "--ca-file",
        other_file.to_str().unwrap(),
    ]);
    assert_eq!(
        wrong_ca.status.code(),
        Some(1),
        "a server of another CA was trusted"
    );

    let client = pki.ca.client_with_dns("ops.internal");
    let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&cert, &client.cert_pem).unwrap();
    std::fs::write(&key, &client.key_pem).unwrap();
    let list = run(&[
        "keys",
        "list",
        "--addr",
        &format!("https://{}", server.addr),
        "--ca-file",
        ca,
        "--cert-file",
        cert.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let doc: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(doc["profiles"][0]["profile"], "default");
    assert_eq!(doc["profiles"][0]["keys"][0]["key_id"], "k");

    let half = run(&[
        "keys",
        "list",
        "--addr",
        &server.addr,
        "--ca-file",
        ca,
        "--cert-file",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(
        half.status.code(),
        Some(2),
        "--cert-file without --key-file was accepted"
    );
}

#[test]
fn config_check_reports_the_tls_certificate_and_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::pki::TestPki::new(dir.path(), true);
    let config = tls_config_file(dir.path(), &pki);
    let data = tempfile::tempdir().unwrap();
    let out = config_check(&config, data.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout(&out);
    let tls = report.lines().find(|l| l.starts_with("tls:")).unwrap();
    assert!(tls.contains("server.pem"), "{tls}");
    assert!(tls.contains("127.0.0.1, localhost"), "{tls}");
    assert!(
        report.contains("client certs:  requested, checked against"),
        "{report}"
    );
}

#[test]
fn serve_refuses_to_start_on_a_key_that_does_not_match_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::pki::TestPki::new(dir.path(), false);
    let other = pki.ca.server_cert();
    std::fs::write(&pki.files.key_file, &other.key_pem).unwrap();
    let config = tls_config_file(dir.path(), &pki);
    let data = tempfile::tempdir().unwrap();
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for part in [
        "tls.toml",
        "server.tls.key_file",
        "server.key",
        "does not match",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert!(tree(data.path()).is_empty(), "serve wrote before refusing");
}
