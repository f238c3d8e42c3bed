//! The configuration file: serde structs that mirror the TOML, turned by [`Config::from_toml`]
//! into one checked [`Config`] of keys and profile templates. This is the only module that
//! reads configured key files or the environment, and it writes generated key files; managed
//! key directories belong to [`crate::state::managed`].
//!
//! Every error names where it came from: the file, the key id or profile, the field, the reason.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use ring::rand::SystemRandom;
use serde::Deserialize;

use crate::core::keys::{self, Algorithm, HmacSecret, Key, KeyFamily, KeyId, KeyStore};
use crate::core::login::LoginUrl;
use crate::core::profile::{DEFAULT_MAX_TOKEN_BYTES, Profile, ProfileSpec, Schedule, SigningKey};
use crate::core::rotation::{KeyTimes, RotationSpec};
use crate::state::files;

/// The configuration `serve` runs on when no `--config` is given; `examples/default.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/default.toml");

/// The address the service listens on unless the config or `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// The largest request message the service decodes, unless configured.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How long relying parties may cache the JWKS (its `Cache-Control: max-age`), unless configured.
pub const DEFAULT_JWKS_CACHE: Duration = Duration::from_secs(300);

/// A managed profile keeps at most this many keys published ahead of the active one.
const MAX_KEYS_AHEAD: u64 = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    http_listen: Option<String>,
    jwks_cache: Option<String>,
    #[serde(default)]
    admin: bool,
    max_request_bytes: Option<usize>,
    drain_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    algorithm: String,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    secret_encoding: Option<String>,
    private_key_file: Option<PathBuf>,
    private_key_env: Option<String>,
    public_key_file: Option<PathBuf>,
    #[serde(default)]
    generate: bool,
    not_before: Option<toml::Value>,
    not_after: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    algorithm: String,
    rotate_every: String,
    publish_ahead: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    signing_key: Option<String>,
    signing_keys: Option<Vec<String>>,
    rotation: Option<RawRotation>,
    verify_keys: Option<Vec<String>>,
    issuer: Option<String>,
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default)]
    allow_audience_override: bool,
    ttl: Option<String>,
    max_ttl: Option<String>,
    login_ttl: Option<String>,
    leeway: Option<String>,
    subject_claim: Option<String>,
    #[serde(default)]
    required_claims: Vec<String>,
    claims: Option<toml::Table>,
    typ: Option<String>,
    login_url: Option<String>,
    #[serde(default)]
    allowed_next_origins: Vec<String>,
    max_token_bytes: Option<usize>,
}

/// A checked configuration: where to listen, the keys, and the profiles that use them.
#[derive(Debug)]
pub struct Config {
    /// Where the configuration came from, for logs ("examples/default.toml (embedded)" or a path).
    pub origin: String,
    /// What to read again on reload.
    pub source: Source,
    /// Where generated and managed keys live; relative key paths resolve against it.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The JWKS / OpenID discovery listener; `None` when disabled.
    pub http_listen: Option<SocketAddr>,
    /// `Cache-Control: max-age` of the JWKS documents, and part of the default publish_ahead.
    pub jwks_cache: Duration,
    /// Whether the `tokenauthority.v1.KeyAdmin` service is served.
    pub admin: bool,
    pub max_request_bytes: usize,
    /// How long a shutdown waits for in-flight calls before closing them.
    pub drain_timeout: Duration,
    pub keys: KeyStore,
    /// Profiles by name order; managed ones get their signing keys from the key manager.
    pub profiles: Vec<ProfileTemplate>,
    /// Keys that `generate = true` would have created, made in memory only: filled by
    /// [`Config::check`], always empty for a configuration that serves.
    pub would_generate: Vec<(KeyId, PathBuf)>,
}

/// A checked profile before its managed keys are added.
#[derive(Clone, Debug)]
pub struct ProfileTemplate {
    /// The profile with its configured keys (none, for a managed profile).
    pub spec: ProfileSpec,
    /// The `rotation` block, when the service manages this profile's signing keys.
    pub rotation: Option<RotationSpec>,
}

impl ProfileTemplate {
    /// The profile with `managed` keys added as signers.
    pub fn build(
        &self,
        managed: impl IntoIterator<Item = (Arc<Key>, KeyTimes)>,
    ) -> Result<Profile, crate::core::profile::ProfileError> {
        let mut spec = self.spec.clone();
        spec.signing_keys
            .extend(managed.into_iter().map(|(key, times)| SigningKey {
                key,
                schedule: Schedule::Managed(times),
            }));
        Profile::new(spec)
    }
}

/// The text a configuration was read from, kept so a reload reads the same place again.
#[derive(Clone, Debug)]
pub enum Source {
    Embedded,
    File(PathBuf),
    Inline(Arc<str>),
}

/// Where a configuration comes from.
#[derive(Debug, Clone, Copy)]
pub enum ConfigSource<'a> {
    /// The compiled-in `examples/default.toml`.
    Embedded,
    /// A TOML file.
    File(&'a Path),
}

impl Config {
    /// Reads and checks a configuration. Relative key paths resolve against `data_dir`.
    pub fn load(source: ConfigSource<'_>, data_dir: &Path) -> anyhow::Result<Config> {
        Config::read(source, data_dir, Writes::Allowed)
    }

    /// Reads and checks a configuration exactly as [`Config::load`] does, but writes nothing:
    /// a key that `generate = true` would create is generated in memory and listed in
    /// `would_generate`. For `config check`.
    pub fn check(source: ConfigSource<'_>, data_dir: &Path) -> anyhow::Result<Config> {
        Config::read(source, data_dir, Writes::Forbidden)
    }

    fn read(source: ConfigSource<'_>, data_dir: &Path, writes: Writes) -> anyhow::Result<Config> {
        let mut config = match source {
            ConfigSource::Embedded => Config::parse(
                EMBEDDED_DEFAULT,
                "examples/default.toml (embedded default)",
                data_dir,
                writes,
            ),
            ConfigSource::File(path) => {
                let text = fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                Config::parse(&text, &path.display().to_string(), data_dir, writes)
            }
        }?;
        config.source = match source {
            ConfigSource::Embedded => Source::Embedded,
            ConfigSource::File(path) => Source::File(path.to_owned()),
        };
        Ok(config)
    }

    /// Reads the configuration again from where this one came from.
    pub fn reload(&self) -> anyhow::Result<Config> {
        match &self.source {
            Source::Embedded => Config::load(ConfigSource::Embedded, &self.data_dir),
            Source::File(path) => Config::load(ConfigSource::File(path), &self.data_dir),
            Source::Inline(text) => {
                let mut config = Config::from_toml(text, &self.origin, &self.data_dir)?;
                config.source = self.source.clone();
                Ok(config)
            }
        }
    }

    /// Parses and checks TOML text; `origin` names it in every error.
    pub fn from_toml(text: &str, origin: &str, data_dir: &Path) -> anyhow::Result<Config> {
        Config::parse(text, origin, data_dir, Writes::Allowed)
    }

    fn parse(text: &str, origin: &str, data_dir: &Path, writes: Writes) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))?;
        let server = &raw.server;
        let listen = server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen.parse().map_err(|e| {
            anyhow!("{origin}: server.listen {listen:?}: {e} (write it as IP:PORT)")
        })?;
        let max_request_bytes = server
            .max_request_bytes
            .unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
        if !(1024..=16 * 1024 * 1024).contains(&max_request_bytes) {
            bail!(
                "{origin}: server.max_request_bytes must be between 1024 and 16777216, not {max_request_bytes}"
            );
        }
        let drain_timeout = duration(server.drain_timeout.as_deref(), Duration::from_secs(10))
            .with_context(|| format!("{origin}: server.drain_timeout"))?;
        let http_listen = match server.http_listen.as_deref() {
            None | Some("") | Some("off") => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|e| {
                anyhow!(
                    "{origin}: server.http_listen {text:?}: {e} (write it as IP:PORT, or \"off\")"
                )
            })?),
        };
        let jwks_cache = duration(server.jwks_cache.as_deref(), DEFAULT_JWKS_CACHE)
            .with_context(|| format!("{origin}: server.jwks_cache"))?;
        if jwks_cache.subsec_nanos() != 0 || jwks_cache > Duration::from_secs(7 * 86400) {
            bail!("{origin}: server.jwks_cache must be whole seconds, at most 7 days");
        }

        let mut store = KeyStore::default();
        let mut would_generate = Vec::new();
        let mut windows: std::collections::HashMap<String, (Option<u64>, Option<u64>)> =
            std::collections::HashMap::new();
        for raw_key in &raw.keys {
            let in_key = || format!("{origin}: key {:?}", raw_key.id);
            let not_before = instant(raw_key.not_before.as_ref())
                .with_context(|| format!("{}: not_before", in_key()))?;
            let not_after = instant(raw_key.not_after.as_ref())
                .with_context(|| format!("{}: not_after", in_key()))?;
            if let (Some(b), Some(a)) = (not_before, not_after)
                && b >= a
            {
                bail!("{}: not_before must be earlier than not_after", in_key());
            }
            windows.insert(raw_key.id.clone(), (not_before, not_after));
            let (key, generated) = load_key(raw_key, data_dir, writes).with_context(in_key)?;
            if let Some(path) = generated {
                would_generate.push((key.id().clone(), path));
            }
            if let Err(key) = store.insert(key) {
                bail!(
                    "{origin}: key {:?}: the id is used by another key; key ids must be unique",
                    key.id().as_str()
                );
            }
        }

        if raw.profiles.is_empty() {
            bail!(
                "{origin}: no [profiles.NAME] are configured; the service would have nothing to do"
            );
        }
        let mut profiles = Vec::new();
        for (name, raw_profile) in raw.profiles {
            let template = build_profile(&name, raw_profile, &store, &windows, jwks_cache)
                .with_context(|| format!("{origin}: profile {name:?}"))?;
            profiles.push(template);
        }
        for key in store.sorted() {
            let used = profiles.iter().any(|p| {
                p.spec.verify_keys.iter().any(|k| Arc::ptr_eq(k, key))
                    || p.spec.signing_keys.iter().any(|s| Arc::ptr_eq(&s.key, key))
            });
            if !used {
                tracing::warn!(origin, kid = %key.id(), "key is configured but no profile uses it");
            }
        }

        Ok(Config {
            origin: origin.to_owned(),
            source: Source::Inline(Arc::from(text)),
            data_dir: data_dir.to_owned(),
            listen,
            http_listen,
            jwks_cache,
            admin: server.admin,
            max_request_bytes,
            drain_timeout,
            keys: store,
            profiles,
            would_generate,
        })
    }
}

/// Whether loading may create the key files `generate = true` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writes {
    Allowed,
    /// Generate in memory and report the file instead (`config check`).
    Forbidden,
}

fn duration(text: Option<&str>, default: Duration) -> anyhow::Result<Duration> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            anyhow!("{text:?} is not a duration like \"30s\", \"5m\" or \"24h\": {e}")
        }),
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

/// Loads one key; with [`Writes::Forbidden`], also returns the file `generate` would have made.
fn load_key(
    raw: &RawKey,
    data_dir: &Path,
    writes: Writes,
) -> anyhow::Result<(Key, Option<PathBuf>)> {
    let id = KeyId::parse(&raw.id)?;
    let algorithm: Algorithm = raw.algorithm.parse()?;
    let sources = [
        ("secret_env", raw.secret_env.is_some()),
        ("secret_file", raw.secret_file.is_some()),
        ("private_key_file", raw.private_key_file.is_some()),
        ("private_key_env", raw.private_key_env.is_some()),
        ("public_key_file", raw.public_key_file.is_some()),
    ];
    let given: Vec<&str> = sources
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    if given.len() != 1 {
        bail!(
            "give exactly one of secret_env, secret_file (HMAC) or private_key_file, private_key_env, public_key_file; found {}",
            if given.is_empty() {
                "none".to_owned()
            } else {
                given.join(", ")
            }
        );
    }
    let hmac = algorithm.family() == KeyFamily::Hmac;
    let is_secret = raw.secret_env.is_some() || raw.secret_file.is_some();
    if hmac && !is_secret {
        bail!(
            "{algorithm} is an HMAC algorithm: give secret_file or secret_env, not {}",
            given[0]
        );
    }
    if !hmac && is_secret {
        bail!(
            "{algorithm} is not an HMAC algorithm: give private_key_file, private_key_env or public_key_file, not {}",
            given[0]
        );
    }
    if raw.secret_encoding.is_some() && !is_secret {
        bail!("secret_encoding applies only to secret_file and secret_env");
    }
    if raw.generate && raw.secret_file.is_none() && raw.private_key_file.is_none() {
        bail!(
            "generate = true needs secret_file or private_key_file: the file the new key is kept in"
        );
    }
    if raw.generate && !algorithm.can_generate() {
        bail!(keys::KeyError::CannotGenerate { alg: algorithm });
    }

    if is_secret {
        let mut generated = None;
        let text = if let Some(var) = &raw.secret_env {
            std::env::var_os(var)
                .ok_or_else(|| anyhow!("secret_env: environment variable {var} is not set"))?
                .into_encoded_bytes()
        } else {
            let path = resolve(
                data_dir,
                raw.secret_file.as_deref().unwrap_or(Path::new("")),
            );
            let (mut bytes, made) =
                read_key_file(&path, raw.generate, algorithm, "secret_file", writes)?;
            generated = made;
            // Editors and `echo` end files with a newline that is not part of the secret.
            if bytes.ends_with(b"\r\n") {
                bytes.truncate(bytes.len() - 2);
            } else if bytes.ends_with(b"\n") {
                bytes.pop();
            }
            bytes
        };
        let bytes = match raw.secret_encoding.as_deref().unwrap_or("raw") {
            "raw" => text,
            "base64" => decode_base64(&text)
                .context("secret_encoding = \"base64\": the secret is not base64")?,
            other => bail!("secret_encoding {other:?} is not \"raw\" or \"base64\""),
        };
        let secret = HmacSecret::new(algorithm, bytes)?;
        return Ok((Key::from_hmac_secret(id, secret, algorithm)?, generated));
    }
    if let Some(file) = &raw.private_key_file {
        let path = resolve(data_dir, file);
        let (pem, generated) =
            read_key_file(&path, raw.generate, algorithm, "private_key_file", writes)?;
        let key = Key::from_private_pem(id, algorithm, &pem)
            .with_context(|| format!("private_key_file {}", path.display()))?;
        return Ok((key, generated));
    }
    if let Some(var) = &raw.private_key_env {
        let pem = std::env::var_os(var)
            .ok_or_else(|| anyhow!("private_key_env: environment variable {var} is not set"))?
            .into_encoded_bytes();
        let key = Key::from_private_pem(id, algorithm, &pem)
            .with_context(|| format!("private_key_env {var}"))?;
        return Ok((key, None));
    }
    let path = resolve(
        data_dir,
        raw.public_key_file.as_deref().unwrap_or(Path::new("")),
    );
    let pem = fs::read(&path).with_context(|| format!("public_key_file {}", path.display()))?;
    let key = Key::from_public_pem(id, algorithm, &pem)
        .with_context(|| format!("public_key_file {}", path.display()))?;
    Ok((key, None))
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

fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        data_dir.join(path)
    }
}

/// Reads a key file; with `generate`, first creates it with fresh key material if it is missing.
/// With [`Writes::Forbidden`] the new material is returned without being written, together
/// with the path it would have been written to.
fn read_key_file(
    path: &Path,
    generate: bool,
    algorithm: Algorithm,
    field: &str,
    writes: Writes,
) -> anyhow::Result<(Vec<u8>, Option<PathBuf>)> {
    if generate && !path.exists() {
        let material = keys::generate(algorithm, &SystemRandom::new())?;
        if writes == Writes::Forbidden {
            return Ok((material.into_bytes(), Some(path.to_owned())));
        }
        files::write_private(path, material.as_bytes()).with_context(|| {
            format!(
                "{field} {}: cannot create the generated key",
                path.display()
            )
        })?;
        tracing::info!(path = %path.display(), %algorithm, "generated a new key");
    }
    let bytes = fs::read(path).with_context(|| format!("{field} {}", path.display()))?;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "key file is readable by other users; chmod 600 it");
    }
    Ok((bytes, None))
}

fn build_profile(
    name: &str,
    raw: RawProfile,
    store: &KeyStore,
    windows: &std::collections::HashMap<String, (Option<u64>, Option<u64>)>,
    jwks_cache: Duration,
) -> anyhow::Result<ProfileTemplate> {
    let lookup = |field: &str, id: &str| -> anyhow::Result<Arc<Key>> {
        store.get(id).cloned().ok_or_else(|| {
            let known: Vec<String> = store
                .sorted()
                .iter()
                .map(|k| format!("{:?}", k.id().as_str()))
                .collect();
            anyhow!(
                "{field}: {id:?} is not a configured key (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
    };
    let (field, signing_ids) = match (&raw.signing_key, &raw.signing_keys, &raw.rotation) {
        (Some(id), None, None) => ("signing_key", vec![id.clone()]),
        (None, Some(ids), None) if !ids.is_empty() => ("signing_keys", ids.clone()),
        (None, Some(_), None) => bail!("signing_keys must not be empty"),
        (None, None, _) => ("signing_key", Vec::new()),
        (_, _, Some(_)) => bail!(
            "a profile with a rotation block gets its signing keys from the service; remove signing_key/signing_keys"
        ),
        (Some(_), Some(_), None) => bail!("give signing_key or signing_keys, not both"),
    };
    let mut signing_keys = Vec::new();
    for id in &signing_ids {
        let key = lookup(field, id)?;
        let (not_before, not_after) = windows.get(id.as_str()).copied().unwrap_or_default();
        signing_keys.push(SigningKey {
            key,
            schedule: Schedule::File {
                not_before,
                not_after,
            },
        });
    }
    let verify_keys = raw
        .verify_keys
        .unwrap_or_default()
        .iter()
        .map(|id| lookup("verify_keys", id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !verify_keys.is_empty()
        && let Some(missing) = signing_keys
            .iter()
            .find(|s| !verify_keys.iter().any(|k| Arc::ptr_eq(k, &s.key)))
    {
        bail!(
            "verify_keys must include the signing_key {:?}, or the profile would refuse its own tokens",
            missing.key.id().as_str()
        );
    }
    let parse = |field: &str, text: Option<&str>| -> anyhow::Result<Option<Duration>> {
        text.map(|t| duration(Some(t), Duration::ZERO).with_context(|| field.to_owned()))
            .transpose()
    };
    let login_url = raw
        .login_url
        .as_deref()
        .map(|template| LoginUrl::parse(template, &raw.allowed_next_origins))
        .transpose()?;
    if login_url.is_none() && !raw.allowed_next_origins.is_empty() {
        bail!("allowed_next_origins is set but login_url is not");
    }
    let claims = match raw.claims {
        None => serde_json::Map::new(),
        Some(table) => {
            for (name, value) in &table {
                if contains_datetime(value) {
                    bail!(
                        "claims.{name}: TOML dates have no JSON form; write the time as a number of seconds or a string"
                    );
                }
            }
            match serde_json::to_value(table).context("claims")? {
                serde_json::Value::Object(map) => map,
                _ => bail!("claims must be a table"),
            }
        }
    };
    let spec = ProfileSpec {
        name: name.to_owned(),
        signing_keys,
        verify_keys,
        issuer: raw.issuer,
        audience: raw.audience,
        allow_audience_override: raw.allow_audience_override,
        ttl: parse("ttl", raw.ttl.as_deref())?,
        max_ttl: parse("max_ttl", raw.max_ttl.as_deref())?,
        login_ttl: parse("login_ttl", raw.login_ttl.as_deref())?,
        leeway: parse("leeway", raw.leeway.as_deref())?.unwrap_or(Duration::ZERO),
        subject_claim: raw.subject_claim,
        required_claims: raw.required_claims,
        claims,
        typ: raw.typ,
        login_url,
        max_token_bytes: raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
    };
    let Some(raw_rotation) = raw.rotation else {
        Profile::new(spec.clone())?;
        return Ok(ProfileTemplate {
            spec,
            rotation: None,
        });
    };
    let rotation = rotation_spec(name, &raw_rotation, &spec, jwks_cache).context("rotation")?;
    // Check the whole profile now, with a throwaway key of the managed algorithm standing in
    // for the keys the service will generate, so a reload never swaps in a profile that fails.
    let material = keys::generate(rotation.algorithm, &SystemRandom::new())?;
    let stand_in = Key::from_material(
        KeyId::parse("check")?,
        rotation.algorithm,
        material.as_bytes(),
    )?;
    let template = ProfileTemplate {
        spec,
        rotation: Some(rotation),
    };
    let always = KeyTimes {
        publish_at: 0,
        activate_at: 0,
        retire_at: u64::MAX,
        remove_at: u64::MAX,
    };
    template.build([(Arc::new(stand_in), always)])?;
    Ok(template)
}

fn rotation_spec(
    name: &str,
    raw: &RawRotation,
    spec: &ProfileSpec,
    jwks_cache: Duration,
) -> anyhow::Result<RotationSpec> {
    if name.starts_with('.') {
        bail!("a managed profile's name must not start with \".\" (it names its key directory)");
    }
    let algorithm: Algorithm = raw.algorithm.parse().context("algorithm")?;
    if !algorithm.can_generate() {
        bail!(
            "algorithm {algorithm}: the service generates ES256, ES384, EdDSA and HMAC keys; give RSA keys as files"
        );
    }
    let seconds = |field: &str, value: Duration| -> anyhow::Result<u64> {
        if value.subsec_nanos() != 0 || value.as_secs() == 0 {
            bail!("{field} must be whole seconds, at least 1s");
        }
        Ok(value.as_secs())
    };
    let rotate_every = seconds(
        "rotate_every",
        duration(Some(&raw.rotate_every), Duration::ZERO).context("rotate_every")?,
    )?;
    let max_ttl = spec
        .max_ttl
        .or(spec.ttl)
        .unwrap_or(Duration::from_secs(300))
        .as_secs();
    let publish_ahead = match &raw.publish_ahead {
        Some(text) => seconds(
            "publish_ahead",
            duration(Some(text), Duration::ZERO).context("publish_ahead")?,
        )?,
        None => max_ttl + jwks_cache.as_secs(),
    };
    if publish_ahead > rotate_every.saturating_mul(MAX_KEYS_AHEAD) {
        bail!(
            "publish_ahead ({}) is more than {MAX_KEYS_AHEAD} times rotate_every ({}): that many keys would wait unused; rotate less often",
            humantime::format_duration(Duration::from_secs(publish_ahead)),
            humantime::format_duration(Duration::from_secs(rotate_every)),
        );
    }
    Ok(RotationSpec {
        algorithm,
        rotate_every,
        publish_ahead,
        verify_after: max_ttl + spec.leeway.as_secs(),
    })
}

fn contains_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(items) => items.iter().any(contains_datetime),
        toml::Value::Table(table) => table.values().any(contains_datetime),
        _ => false,
    }
}
