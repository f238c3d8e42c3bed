//! `keys generate`: key material for a `[[keys]]` entry, written to a new 0600 file (with a
//! report and a config snippet naming it) or to stdout alone; never printed by accident.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use ring::rand::SystemRandom;

use crate::core::keys::{self, Algorithm, KeyFamily};

/// RSA keys are 2048 bits unless `--bits` says otherwise.
pub const DEFAULT_RSA_BITS: usize = 2048;

/// What `keys generate` is asked to make, and where to put it.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The one algorithm the key is for.
    pub algorithm: Algorithm,
    /// A file to write the key to, `-` for stdout; `None` is refused (see [`generate_key`]).
    pub out: Option<PathBuf>,
    /// RSA modulus size; refused for other algorithms. [`DEFAULT_RSA_BITS`] when `None`.
    pub bits: Option<usize>,
    /// Replace an existing `out` file.
    pub force: bool,
}

/// Creates a key and writes it where `--out` says: to a new 0600 file (then prints the kid,
/// public JWK and a `[[keys]]` snippet, never the key), or with `-` to stdout and nothing else.
/// Without `--out` it refuses whether or not stdout is a terminal, so the private key is never
/// printed by accident.
pub fn generate_key(options: &GenerateOptions) -> anyhow::Result<()> {
    let alg = options.algorithm;
    let Some(out) = &options.out else {
        bail!(
            "refusing to print a private key: give --out FILE to write it to a new file (mode 0600), or --out - to write it to standard output"
        );
    };
    let to_stdout = out.as_os_str() == "-";
    if options.force && to_stdout {
        bail!("--force applies only to --out FILE");
    }
    let bits = rsa_bits(alg, options.bits)?;
    if !to_stdout && !options.force && fs::symlink_metadata(out).is_ok() {
        bail!(
            "{} already exists; refusing to overwrite it (give --force to replace it)",
            out.display()
        );
    }

    let material = match bits {
        Some(bits) => keys::generate_rsa(bits)?,
        None => keys::generate(alg, &SystemRandom::new())?,
    };
    let generated = describe(alg, &material)?;

    if to_stdout {
        print_key(&material)?;
        eprint!("{}", generated.summary(None));
        return Ok(());
    }
    crate::state::files::write_private(out, material.as_bytes())
        .with_context(|| format!("cannot write the key to {}", out.display()))?;
    print!("{}", generated.summary(Some(&absolute(out))));
    Ok(())
}

/// The RSA modulus size to make; `None` for the algorithms whose key size is fixed.
fn rsa_bits(alg: Algorithm, bits: Option<usize>) -> anyhow::Result<Option<usize>> {
    match (alg.family(), bits) {
        (KeyFamily::Rsa, bits) => Ok(Some(bits.unwrap_or(DEFAULT_RSA_BITS))),
        (_, None) => Ok(None),
        (_, Some(bits)) => bail!(
            "--bits {bits}: only RSA keys (RS256 … PS512) take a size; {alg} keys have a fixed one"
        ),
    }
}

/// Writes the key alone to stdout, ending in a newline as a text file does.
fn print_key(material: &str) -> anyhow::Result<()> {
    let newline: &[u8] = if material.ends_with('\n') { b"" } else { b"\n" };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(material.as_bytes())
        .and_then(|()| stdout.write_all(newline))
        .and_then(|()| stdout.flush())
        .context("cannot write the key to standard output")
}

/// `out` as an absolute path for the snippet: the config resolves relative key paths against
/// --data-dir, not against our working directory.
fn absolute(out: &Path) -> PathBuf {
    fs::canonicalize(out).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|dir| dir.join(out))
            .unwrap_or_else(|_| out.to_owned())
    })
}

/// What is printed about a new key: never the key itself.
struct Generated {
    alg: Algorithm,
    /// The RFC 7638 thumbprint; `None` for HMAC.
    kid: Option<String>,
    /// The public JWK as one line of JSON; `None` for HMAC.
    jwk: Option<String>,
    /// Length of an HMAC secret's text.
    secret_len: usize,
}

/// Loads the new material the way `serve` will, so a key that would not load is never written.
fn describe(alg: Algorithm, material: &str) -> anyhow::Result<Generated> {
    let key = keys::load_generated(alg, material.as_bytes(), &SystemRandom::new())?;
    // An HMAC key has no public JWK; the random id it got is not shown, the id is the operator's.
    Ok(match key.public_jwk() {
        Some(jwk) => Generated {
            alg,
            kid: Some(jwk.kid.clone()),
            jwk: Some(serde_json::Value::Object(jwk.to_json()).to_string()),
            secret_len: 0,
        },
        None => Generated {
            alg,
            kid: None,
            jwk: None,
            secret_len: material.len(),
        },
    })
}

impl Generated {
    /// The report; with `file`, also where the key went and a `[[keys]]` snippet naming it.
    fn summary(&self, file: Option<&Path>) -> String {
        let mut text = String::new();
        self.write_identity(&mut text);
        if let Some(file) = file {
            self.write_snippet(&mut text, file);
        }
        text
    }

    /// The kid, algorithm and public JWK (for HMAC, what the secret is instead).
    fn write_identity(&self, text: &mut String) {
        match &self.kid {
            Some(kid) => {
                let _ = writeln!(text, "kid:        {kid}");
                let _ = writeln!(text, "            (RFC 7638 thumbprint of the public key)");
            }
            None => {
                let _ = writeln!(
                    text,
                    "kid:        none derived: an HMAC secret has no public key to take a thumbprint of; the key id is yours to choose"
                );
            }
        }
        let _ = writeln!(text, "algorithm:  {}", self.alg);
        match &self.jwk {
            Some(jwk) => {
                let _ = writeln!(text, "public JWK: {jwk}");
            }
            None => {
                let _ = writeln!(
                    text,
                    "secret:     {} characters of base64url text; the secret is that text as written (use it as is on the other side, do not decode it)",
                    self.secret_len
                );
            }
        }
    }

    /// Where the key went, and the `[[keys]]` entry that loads it from there.
    fn write_snippet(&self, text: &mut String, file: &Path) {
        let alg = self.alg;
        let what = if self.kid.is_some() {
            "private key"
        } else {
            "secret"
        };
        let _ = writeln!(text, "{what} written to {} (mode 0600)", file.display());
        let _ = writeln!(
            text,
            "\n# Add to the configuration (relative paths there resolve against --data-dir):"
        );
        let path = toml::Value::String(file.to_string_lossy().into_owned());
        let _ = writeln!(text, "[[keys]]");
        match &self.kid {
            Some(kid) => {
                let _ = writeln!(text, "id = {}", toml::Value::String(kid.clone()));
                let _ = writeln!(text, "algorithm = \"{alg}\"");
                let _ = writeln!(text, "private_key_file = {path}");
            }
            None => {
                let _ = writeln!(
                    text,
                    "id = \"{}\"  # yours to choose: 1 to 256 bytes of text, no control characters",
                    hmac_id(alg)
                );
                let _ = writeln!(text, "algorithm = \"{alg}\"");
                let _ = writeln!(text, "secret_file = {path}");
            }
        }
    }
}

/// A suggested id for a new HMAC secret: its algorithm and today's date, `hs256-2026-03-01`.
fn hmac_id(alg: Algorithm) -> String {
    let day = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    format!(
        "{}-{}",
        alg.name().to_lowercase(),
        day.get(..10).unwrap_or("1")
    )
}
