//! Every key file the service writes (`keys generate`, `generate = true`, managed keys) is read
//! by an outside parser, the `openssl` binary, and the public key OpenSSL derives from it
//! checks a token the service signed with that file. Without `openssl` these tests say so and
//! pass; `.ci/run` installs it.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use token_authority::core::keys::{Algorithm, Key, KeyId};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_token-authority");

/// The algorithms the service makes key files for; RS256 stands for every RSA one (same file).
const GENERATED: [&str; 5] = ["ES256", "ES384", "ES512", "EdDSA", "RS256"];

/// Whether an `openssl` binary runs here; says so when it does not.
pub fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !ok {
        eprintln!("skipped: no `openssl` binary on PATH (apt-get install openssl)");
    }
    ok
}

/// Runs `openssl ARGS…` and returns its stdout, failing the test with its stderr.
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// OpenSSL reads the private key file, derives its public key and reads that back; the
/// derived public key then checks `token`, which the service signed with this file.
fn assert_openssl_reads(alg: &str, private: &Path, token: &str) {
    let file = private.to_str().unwrap();
    openssl(&["pkey", "-in", file, "-noout"]);
    let public = openssl(&["pkey", "-in", file, "-pubout"]);
    let public_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(public_file.path(), &public).unwrap();
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        public_file.path().to_str().unwrap(),
        "-noout",
    ]);

    let algorithm = Algorithm::from_name(alg).unwrap();
    let key = Key::from_public_pem(KeyId::parse("openssl").unwrap(), algorithm, &public).unwrap();
    let (signed, signature) = token.rsplit_once('.').unwrap();
    assert!(
        key.verify(signed.as_bytes(), &unb64(signature)),
        "{alg}: the public key OpenSSL derived does not check the token"
    );
}

/// A server whose profile `p` signs with the key file `file` of `alg`, `generate` as given.
fn signing_config(alg: &str, file: &Path, generate: bool) -> String {
    format!(
        "[server]\n\n[[keys]]\nid = \"k\"\nalgorithm = \"{alg}\"\nprivate_key_file = {file:?}\ngenerate = {generate}\n\n[profiles.p]\nsigning_key = \"k\"\n"
    )
}

#[tokio::test]
async fn openssl_reads_every_key_file_keys_generate_writes() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for alg in GENERATED {
        let file = dir.path().join(format!("{alg}.pem"));
        let out = Command::new(BIN)
            .args(["keys", "generate", "--algorithm", alg, "--out"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let app = spawn_app_with(&signing_config(alg, &file, false)).await;

        let issued = app.issue("p", "alice").await;

        assert_openssl_reads(alg, &file, &issued.token);
    }
}

#[tokio::test]
async fn openssl_reads_the_files_generate_true_creates() {
    if !openssl_available() {
        return;
    }
    for alg in ["ES256", "ES384", "ES512", "EdDSA"] {
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        let file = data_dir.path().join("made.pem");
        let app = spawn_app_in(&signing_config(alg, &file, true), data_dir.clone()).await;

        let issued = app.issue("p", "alice").await;

        assert_openssl_reads(alg, &file, &issued.token);
    }
}

#[tokio::test]
async fn openssl_reads_the_key_files_of_managed_profiles() {
    if !openssl_available() {
        return;
    }
    for alg in ["ES256", "ES384", "ES512", "EdDSA"] {
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        let config = format!(
            "[server]\n\n[profiles.rotating]\nttl = \"1m\"\nmax_ttl = \"2m\"\n[profiles.rotating.rotation]\nalgorithm = \"{alg}\"\nrotate_every = \"10m\"\n"
        );
        let app = spawn_app_in(&config, data_dir.clone()).await;

        let issued = app.issue("rotating", "alice").await;

        let file = data_dir
            .path()
            .join("managed/rotating")
            .join(format!("{}.pem", issued.key_id));
        assert_openssl_reads(alg, &file, &issued.token);
    }
}
