//! One `[[keys]]` entry → a parsed [`Key`]: where its material comes from (exactly one
//! source), reading or generating the file, decoding the secret or the JWK. The only code that
//! reads configured key files and key material from the environment.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use ring::rand::SystemRandom;

use super::raw::{RawKey, SecretEncoding};
use super::{Writes, listed};
use crate::core::keys::{
    self, Algorithm, HmacSecret, JwkExpectations, JwkForm, Key, KeyError, KeyFamily, KeyId,
};
use crate::core::profile::SigningWindow;
use crate::state::files;

/// Where one key's material comes from; a `[[keys]]` entry names exactly one.
enum Material<'a> {
    SecretEnv(&'a str),
    SecretFile(&'a Path),
    PrivateKeyFile(&'a Path),
    PrivateKeyEnv(&'a str),
    PublicKeyFile(&'a Path),
    JwkFile(&'a Path),
    JwkEnv(&'a str),
}

impl RawKey {
    /// How messages name this entry: its id, or where its JWK comes from.
    pub(super) fn label(&self) -> String {
        match (&self.id, &self.jwk_file, &self.jwk_env) {
            (Some(id), _, _) => format!("{id:?}"),
            (None, Some(file), _) => format!("from jwk_file {}", file.display()),
            (None, None, Some(var)) => format!("from jwk_env {var}"),
            (None, None, None) => "without an id".to_owned(),
        }
    }
}

/// A loaded key and, with [`Writes::Forbidden`], the file `generate = true` would have made.
pub(super) struct Loaded {
    pub key: Key,
    pub would_generate: Option<PathBuf>,
}

/// Loads one key. Relative paths resolve against `data_dir`.
pub(super) fn load(raw: &RawKey, data_dir: &Path, writes: Writes) -> anyhow::Result<Loaded> {
    let algorithm: Option<Algorithm> = raw
        .algorithm
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("algorithm")?;
    let material = material(raw, algorithm)?;
    if let Some(key) = jwk_key(raw, &material, algorithm, data_dir)? {
        return Ok(Loaded {
            key,
            would_generate: None,
        });
    }
    let Some(id) = &raw.id else {
        bail!("id is missing (only a JWK may give its key id as kid)");
    };
    let id = KeyId::parse(id).context("id")?;
    let Some(algorithm) = algorithm else {
        bail!("algorithm is missing (only a JWK may give its algorithm as alg)");
    };
    let generate = Generate {
        asked: raw.generate,
        algorithm,
        writes,
    };
    let mut would_generate = None;
    let key = match material {
        Material::SecretEnv(var) => {
            let text = env_bytes("secret_env", var)?;
            secret_key(id, algorithm, raw.secret_encoding, text)?
        }
        Material::SecretFile(file) => {
            let path = resolve(data_dir, file);
            let (text, made) = generate.read(&path, "secret_file")?;
            would_generate = made;
            secret_key(id, algorithm, raw.secret_encoding, without_newline(text))?
        }
        Material::PrivateKeyFile(file) => {
            let path = resolve(data_dir, file);
            let (pem, made) = generate.read(&path, "private_key_file")?;
            would_generate = made;
            Key::from_private_pem(id, algorithm, &pem)
                .with_context(|| format!("private_key_file {}", path.display()))?
        }
        Material::PrivateKeyEnv(var) => {
            let pem = env_bytes("private_key_env", var)?;
            Key::from_private_pem(id, algorithm, &pem)
                .with_context(|| format!("private_key_env {var}"))?
        }
        Material::PublicKeyFile(file) => {
            let path = resolve(data_dir, file);
            let pem =
                fs::read(&path).with_context(|| format!("public_key_file {}", path.display()))?;
            Key::from_public_pem(id, algorithm, &pem)
                .with_context(|| format!("public_key_file {}", path.display()))?
        }
        Material::JwkFile(_) | Material::JwkEnv(_) => {
            unreachable!("jwk_key loads JWK material before this match")
        }
    };
    Ok(Loaded {
        key,
        would_generate,
    })
}

/// The key's `not_before`/`not_after`, checked to leave it time to sign.
pub(super) fn window(raw: &RawKey) -> anyhow::Result<SigningWindow> {
    let not_before = instant(raw.not_before.as_ref()).context("not_before")?;
    let not_after = instant(raw.not_after.as_ref()).context("not_after")?;
    Ok(SigningWindow::new(not_before, not_after)?)
}

/// The key a `jwk_file` or `jwk_env` entry gives, `None` for other material. The JWK may be
/// public or private; `id` and `algorithm`, where given, must agree with its `kid` and `alg`.
fn jwk_key(
    raw: &RawKey,
    material: &Material<'_>,
    algorithm: Option<Algorithm>,
    data_dir: &Path,
) -> anyhow::Result<Option<Key>> {
    let (text, place) = match material {
        Material::JwkFile(file) => {
            let path = resolve(data_dir, file);
            let place = format!("jwk_file {}", path.display());
            (fs::read(&path).with_context(|| place.clone())?, place)
        }
        Material::JwkEnv(var) => (env_bytes("jwk_env", var)?, format!("jwk_env {var}")),
        _ => return Ok(None),
    };
    let text = String::from_utf8(text).map_err(|_| anyhow!("{place}: the JWK is not UTF-8"))?;
    let expect = JwkExpectations {
        form: JwkForm::Either,
        kid: raw.id.as_deref(),
        alg: algorithm,
    };
    let key = Key::from_jwk(&text, &expect).with_context(|| place)?;
    Ok(Some(key))
}

/// The one source the entry names, checked against the algorithm and the other fields.
fn material(raw: &RawKey, algorithm: Option<Algorithm>) -> anyhow::Result<Material<'_>> {
    let mut given = Vec::new();
    if let Some(var) = &raw.secret_env {
        given.push(("secret_env", Material::SecretEnv(var)));
    }
    if let Some(file) = &raw.secret_file {
        given.push(("secret_file", Material::SecretFile(file)));
    }
    if let Some(file) = &raw.private_key_file {
        given.push(("private_key_file", Material::PrivateKeyFile(file)));
    }
    if let Some(var) = &raw.private_key_env {
        given.push(("private_key_env", Material::PrivateKeyEnv(var)));
    }
    if let Some(file) = &raw.public_key_file {
        given.push(("public_key_file", Material::PublicKeyFile(file)));
    }
    if let Some(file) = &raw.jwk_file {
        given.push(("jwk_file", Material::JwkFile(file)));
    }
    if let Some(var) = &raw.jwk_env {
        given.push(("jwk_env", Material::JwkEnv(var)));
    }
    if given.len() != 1 {
        let names: Vec<&str> = given.iter().map(|(name, _)| *name).collect();
        bail!(
            "give exactly one of secret_env, secret_file (HMAC) or private_key_file, private_key_env, public_key_file, or jwk_file, jwk_env; found {}",
            listed(&names)
        );
    }
    let (field, material) = given.remove(0);
    let is_secret = matches!(material, Material::SecretEnv(_) | Material::SecretFile(_));
    let is_jwk = matches!(material, Material::JwkFile(_) | Material::JwkEnv(_));
    if is_jwk && raw.generate {
        bail!("generate = true needs secret_file or private_key_file, not {field}");
    }
    if raw.secret_encoding.is_some() && !is_secret {
        bail!("secret_encoding applies only to secret_file and secret_env");
    }
    // A JWK says itself whether it is a secret or a key pair.
    let Some(algorithm) = algorithm.filter(|_| !is_jwk) else {
        return Ok(material);
    };
    let hmac = algorithm.family() == KeyFamily::Hmac;
    if hmac && !is_secret {
        bail!("{algorithm} is an HMAC algorithm: give secret_file or secret_env, not {field}");
    }
    if !hmac && is_secret {
        bail!(
            "{algorithm} is not an HMAC algorithm: give private_key_file, private_key_env or public_key_file, not {field}"
        );
    }
    let has_file = matches!(
        material,
        Material::SecretFile(_) | Material::PrivateKeyFile(_)
    );
    if raw.generate && !has_file {
        bail!(
            "generate = true needs secret_file or private_key_file: the file the new key is kept in"
        );
    }
    if raw.generate && !algorithm.can_generate() {
        bail!(KeyError::CannotGenerate { alg: algorithm });
    }
    Ok(material)
}

/// An HMAC key from the secret's text, decoded as `encoding` says.
fn secret_key(
    id: KeyId,
    algorithm: Algorithm,
    encoding: Option<SecretEncoding>,
    text: Vec<u8>,
) -> anyhow::Result<Key> {
    let bytes = match encoding.unwrap_or_default() {
        SecretEncoding::Raw => text,
        SecretEncoding::Base64 => decode_base64(&text)
            .context("secret_encoding = \"base64\": the secret is not base64")?,
    };
    let secret = HmacSecret::new(algorithm, bytes)?;
    Ok(Key::from_hmac_secret(id, secret, algorithm)?)
}

fn env_bytes(field: &str, var: &str) -> anyhow::Result<Vec<u8>> {
    Ok(std::env::var_os(var)
        .ok_or_else(|| anyhow!("{field}: environment variable {var} is not set"))?
        .into_encoded_bytes())
}

/// Editors and `echo` end files with a newline that is not part of the secret.
fn without_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.pop();
    }
    bytes
}

fn decode_base64(text: &[u8]) -> anyhow::Result<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    // The decoder's error names the offending byte, which is part of the secret: say less.
    standard
        .decode(text)
        .or_else(|_| url_safe.decode(text))
        .map_err(|_| anyhow!("not valid base64 (standard or URL-safe alphabet)"))
}

/// Relative key paths resolve against the data directory (see ARCHITECTURE.md on why).
pub(super) fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        data_dir.join(path)
    }
}

/// Whether and how a missing key file is generated.
struct Generate {
    asked: bool,
    algorithm: Algorithm,
    writes: Writes,
}

impl Generate {
    /// Reads a key file; with `generate = true`, first creates it with fresh key material if
    /// it is missing. With [`Writes::Forbidden`] the new material is returned without being
    /// written, together with the path it would have been written to.
    fn read(&self, path: &Path, field: &str) -> anyhow::Result<(Vec<u8>, Option<PathBuf>)> {
        if self.asked && !path.exists() {
            let material = keys::generate(self.algorithm, &SystemRandom::new())?;
            if self.writes == Writes::Forbidden {
                return Ok((material.into_bytes(), Some(path.to_owned())));
            }
            files::write_private(path, material.as_bytes()).with_context(|| {
                format!(
                    "{field} {}: cannot create the generated key",
                    path.display()
                )
            })?;
            tracing::info!(path = %path.display(), algorithm = %self.algorithm, "generated a new key");
        }
        let bytes = fs::read(path).with_context(|| format!("{field} {}", path.display()))?;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "key file is readable by other users; chmod 600 it");
        }
        Ok((bytes, None))
    }
}

/// A point in time from TOML: a date-time or a string, in UTC (RFC 3339 with `Z`).
fn instant(value: Option<&toml::Value>) -> anyhow::Result<Option<u64>> {
    let text = match value {
        None => return Ok(None),
        Some(toml::Value::String(s)) => s.clone(),
        Some(toml::Value::Datetime(d)) => d.to_string(),
        Some(other) => bail!("{other} is not a time; write it like 2026-12-01T00:00:00Z"),
    };
    let time = humantime::parse_rfc3339(&text)
        .map_err(|e| anyhow!("{text:?} is not a UTC time like 2026-12-01T00:00:00Z: {e}"))?;
    Ok(Some(
        time.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    ))
}
