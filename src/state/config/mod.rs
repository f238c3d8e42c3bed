//! The configuration file → one checked [`Config`] of keys and profile templates. The serde
//! structs in [`raw`] mirror the TOML; [`key`] loads each `[[keys]]` entry and [`profile`]
//! turns each profile table into a spec that [`Profile::new`] checks. This layer translates
//! and names where a value came from; the rules themselves live in `core`.
//!
//! Every error names where it came from: the file, the key id or profile, the field, the reason.

mod callers;
mod key;
mod lifecycle;
mod profile;
mod raw;
pub mod tls;

pub use lifecycle::{DEFAULT_STORE_FILE, StoreSettings};

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::core::clock::whole_seconds;
use crate::core::keys::{Key, KeyId, KeyStore};
use crate::core::profile::{
    Profile, ProfileError, ProfileSpec, Schedule, SigningKey, SigningWindow,
};
use crate::core::rotation::{KeyTimes, RotationSpec};
use crate::state::federated::RemoteSettings;
pub use callers::{AUDIT_KEY_FILE, Audit, Callers, RateLimit};
pub use raw::AuditSubjects;
use raw::{HttpListen, RawConfig, RawServer};
use tls::{TlsFiles, TlsMaterial};

/// The configuration `serve` runs on when no `--config` is given; `examples/default.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../examples/default.toml");

/// The address the service listens on unless the config or `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// The largest request message the service decodes, unless configured.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How long relying parties may cache the JWKS (its `Cache-Control: max-age`), unless configured.
pub const DEFAULT_JWKS_CACHE: Duration = Duration::from_secs(300);

/// How long a shutdown waits for in-flight calls, unless configured.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A checked configuration: where to listen, the keys, and the profiles that use them.
#[derive(Debug)]
pub struct Config {
    /// Where the configuration came from, for logs ("examples/default.toml (embedded)" or a path).
    pub origin: String,
    /// What to read again on reload.
    pub source: ConfigSource,
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
    /// The `[[callers]]` and how they authenticate; empty: every call is anonymous.
    pub callers: Arc<Callers>,
    /// `[server] allow_unauthenticated`: serve without callers on a non-loopback address.
    pub allow_unauthenticated: bool,
    /// How audit records write subjects.
    pub audit: Arc<Audit>,
    /// `[server.tls]`, loaded and checked; `None` serves plaintext.
    pub tls: Option<Arc<TlsMaterial>>,
    /// The token store; `None` when no `[store]` is configured and no profile needs one.
    pub store: Option<StoreSettings>,
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
    /// Where a federated profile fetches its remote key set, and the rules for it.
    pub remote: Option<RemoteSettings>,
    /// The `jwks_file` the profile read verify keys from, and the ids of the keys it gave.
    pub jwks_file: Option<(PathBuf, Vec<KeyId>)>,
}

impl ProfileTemplate {
    /// The profile with `managed` keys added as signers.
    pub fn build(
        &self,
        managed: impl IntoIterator<Item = (Arc<Key>, KeyTimes)>,
    ) -> Result<Profile, ProfileError> {
        let mut spec = self.spec.clone();
        spec.signing_keys
            .extend(managed.into_iter().map(|(key, times)| SigningKey {
                key,
                schedule: Schedule::Managed(times),
            }));
        Profile::new(spec)
    }
}

/// Where a configuration comes from; a [`Config`] keeps it so a reload reads the same place.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// The compiled-in `examples/default.toml`.
    Embedded,
    /// A TOML file, read again on every reload.
    File(PathBuf),
    /// TOML text, named `origin` in messages (tests and benchmarks).
    Text { text: Arc<str>, origin: String },
}

impl ConfigSource {
    /// TOML text called `origin` in every message about it.
    pub fn text(text: &str, origin: &str) -> ConfigSource {
        ConfigSource::Text {
            text: Arc::from(text),
            origin: origin.to_owned(),
        }
    }

    /// How messages and logs name this source.
    fn origin(&self) -> String {
        match self {
            ConfigSource::Embedded => "examples/default.toml (embedded default)".to_owned(),
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Text { origin, .. } => origin.clone(),
        }
    }

    fn read(&self) -> anyhow::Result<Cow<'_, str>> {
        Ok(match self {
            ConfigSource::Embedded => Cow::Borrowed(EMBEDDED_DEFAULT),
            ConfigSource::File(path) => Cow::Owned(
                fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?,
            ),
            ConfigSource::Text { text, .. } => Cow::Borrowed(text),
        })
    }
}

impl Config {
    /// Reads and checks a configuration. Relative key paths resolve against `data_dir`.
    pub fn load(source: ConfigSource, data_dir: &Path) -> anyhow::Result<Config> {
        Config::read(source, data_dir, Writes::Allowed)
    }

    /// Reads and checks a configuration exactly as [`Config::load`] does, but writes nothing:
    /// a key that `generate = true` would create is generated in memory and listed in
    /// `would_generate`. For `config check`.
    pub fn check(source: ConfigSource, data_dir: &Path) -> anyhow::Result<Config> {
        Config::read(source, data_dir, Writes::Forbidden)
    }

    /// Parses and checks TOML text; `origin` names it in every error.
    pub fn from_toml(text: &str, origin: &str, data_dir: &Path) -> anyhow::Result<Config> {
        Config::load(ConfigSource::text(text, origin), data_dir)
    }

    /// Reads the configuration again from where this one came from.
    pub fn reload(&self) -> anyhow::Result<Config> {
        Config::load(self.source.clone(), &self.data_dir)
    }

    fn read(source: ConfigSource, data_dir: &Path, writes: Writes) -> anyhow::Result<Config> {
        let origin = source.origin();
        let text = source.read()?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| anyhow!("{origin}: {e}"))?;
        let server = Server::check(&raw.server).map_err(|e| anyhow!("{origin}: {e:#}"))?;
        let tls = match &raw.server.tls {
            Some(raw_tls) => Some(Arc::new(
                TlsFiles::resolve(raw_tls, data_dir)
                    .load()
                    .map_err(|e| anyhow!("{origin}: {e:#}"))?,
            )),
            None => None,
        };
        let (keys, windows, would_generate) = load_keys(&raw, &origin, data_dir, writes)?;
        if raw.profiles.is_empty() {
            bail!(
                "{origin}: no [profiles.NAME] are configured; the service would have nothing to do"
            );
        }
        let mut profiles = Vec::new();
        for (name, raw_profile) in raw.profiles {
            let template = profile::build(
                &name,
                raw_profile,
                &keys,
                &windows,
                server.jwks_cache,
                data_dir,
            )
            .with_context(|| format!("{origin}: profile {name:?}"))?;
            profiles.push(template);
        }
        lifecycle::cross_check(&mut profiles).map_err(|e| anyhow!("{origin}: {e:#}"))?;
        let needed = profiles.iter().any(|p| p.spec.lifecycle.needs_store());
        let store = lifecycle::store(raw.store.as_ref(), data_dir, needed)
            .map_err(|e| anyhow!("{origin}: {e:#}"))?;
        warn_unused_keys(&keys, &profiles, &origin);
        let names: Vec<&str> = profiles.iter().map(|p| p.spec.name.as_str()).collect();
        let callers = callers::build(
            &raw.callers,
            raw.server.caller_profile.as_deref(),
            &names,
            &origin,
        )?;
        if server.admin
            && !callers.is_empty()
            && !callers
                .policy()
                .callers()
                .iter()
                .any(|c| c.may_administer())
        {
            bail!(
                "{origin}: server.admin = true, but no [[callers]] entry may use KeyAdmin; add \"KeyAdmin/*\" (or \"KeyAdmin/RotateKey\", …) to the allow list of the caller that administers keys, or set admin = false"
            );
        }
        let audit = callers::audit(&raw.audit, data_dir, &origin, writes)?;
        let config = Config {
            origin,
            source,
            data_dir: data_dir.to_owned(),
            listen: server.listen,
            http_listen: server.http_listen,
            jwks_cache: server.jwks_cache,
            admin: server.admin,
            max_request_bytes: server.max_request_bytes,
            drain_timeout: server.drain_timeout,
            tls,
            keys,
            profiles,
            callers: Arc::new(callers),
            allow_unauthenticated: raw.server.allow_unauthenticated,
            audit: Arc::new(audit),
            store,
            would_generate,
        };
        config.check_exposure(config.listen)?;
        Ok(config)
    }

    /// Refuses to serve unauthenticated on `listen` unless it is a loopback address or
    /// `[server] allow_unauthenticated` says the network already decides who reaches it.
    /// `serve` asks again for an address given on the command line.
    pub fn check_exposure(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if self.callers.is_empty() && !listen.ip().is_loopback() && !self.allow_unauthenticated {
            bail!(
                "{}: the service would listen on {listen} with no [[callers]] configured, so anyone who reaches that address could issue tokens for any subject. Configure [[callers]] (see \"Securing it\" in the README), listen on a loopback address such as 127.0.0.1, or, if only trusted backends can reach the port, set [server] allow_unauthenticated = true",
                self.origin
            );
        }
        Ok(())
    }
}

/// The `[server]` table, checked.
struct Server {
    listen: SocketAddr,
    http_listen: Option<SocketAddr>,
    jwks_cache: Duration,
    admin: bool,
    max_request_bytes: usize,
    drain_timeout: Duration,
}

impl Server {
    fn check(raw: &RawServer) -> anyhow::Result<Server> {
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen
            .parse()
            .map_err(|e| anyhow!("server.listen {listen:?}: {e} (write it as IP:PORT)"))?;
        let max_request_bytes = raw.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
        if !(1024..=16 * 1024 * 1024).contains(&max_request_bytes) {
            bail!(
                "server.max_request_bytes must be between 1024 and 16777216, not {max_request_bytes}"
            );
        }
        let drain_timeout = duration(raw.drain_timeout.as_deref(), DEFAULT_DRAIN_TIMEOUT)
            .context("server.drain_timeout")?;
        let jwks_cache =
            duration(raw.jwks_cache.as_deref(), DEFAULT_JWKS_CACHE).context("server.jwks_cache")?;
        if whole_seconds(jwks_cache).is_none() || jwks_cache > Duration::from_secs(7 * 86400) {
            bail!("server.jwks_cache must be whole seconds, at most 7 days");
        }
        Ok(Server {
            listen,
            http_listen: match raw.http_listen {
                HttpListen::Off => None,
                HttpListen::At(addr) => Some(addr),
            },
            jwks_cache,
            admin: raw.admin,
            max_request_bytes,
            drain_timeout,
        })
    }
}

/// Configured keys in one store (ids unique), their signing windows, and the files `generate`
/// would have made.
type LoadedKeys = (
    KeyStore,
    HashMap<KeyId, SigningWindow>,
    Vec<(KeyId, PathBuf)>,
);

fn load_keys(
    raw: &RawConfig,
    origin: &str,
    data_dir: &Path,
    writes: Writes,
) -> anyhow::Result<LoadedKeys> {
    let mut store = KeyStore::default();
    let mut windows = HashMap::new();
    let mut would_generate = Vec::new();
    for raw_key in &raw.keys {
        let in_key = || format!("{origin}: key {}", raw_key.label());
        let window = key::window(raw_key).with_context(in_key)?;
        let loaded = key::load(raw_key, data_dir, writes).with_context(in_key)?;
        let id = loaded.key.id().clone();
        if let Some(path) = loaded.would_generate {
            would_generate.push((id.clone(), path));
        }
        if let Err(key) = store.insert(loaded.key) {
            bail!(
                "{origin}: key {:?}: the id is used by another key; key ids must be unique",
                key.id().as_str()
            );
        }
        windows.insert(id, window);
    }
    Ok((store, windows, would_generate))
}

fn warn_unused_keys(store: &KeyStore, profiles: &[ProfileTemplate], origin: &str) {
    for key in store.sorted() {
        let used = profiles.iter().any(|p| {
            p.spec.verify_keys.iter().any(|k| Arc::ptr_eq(k, key))
                || p.spec.signing_keys.iter().any(|s| Arc::ptr_eq(&s.key, key))
        });
        if !used {
            tracing::warn!(
                origin,
                kid = key.id().as_str(),
                "key is configured but no profile uses it"
            );
        }
    }
}

/// `names` joined for a message, or "none".
fn listed(names: &[impl AsRef<str>]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
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
