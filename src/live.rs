//! The live state: the profiles served right now, and the two things that change them while the
//! service runs, managed key rotation and configuration reload.
//!
//! Readers (every RPC, every JWKS request) take the current [`Snapshot`] from an `ArcSwap`
//! without locking; a call that started on one snapshot finishes on it. Writers (the rotation
//! task, `RotateKey`, `Reload`, SIGHUP) are serialized by one async mutex, build a complete new
//! snapshot off to the side, and swap it in only when every profile in it was built.
//!
//! Managed keys live under `<data_dir>/managed/<profile>/`: one private key file per key
//! (`<kid>.pem`, or `<kid>.secret` for HMAC, mode 0600) and `state.json` with every key's
//! times. A new key's file is written (atomically) before the state names it, and a dropped
//! key's file is deleted only after the state stops naming it, so a crash at any point leaves
//! at worst an unnamed file, which the next start deletes.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use arc_swap::ArcSwap;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::keys::{self, Algorithm, Key, KeyFamily, KeyId};
use crate::profile::Profiles;
use crate::rotation::{self, KeyRecord, KeyState, Plan, RotationSpec};

/// What every call reads: the profiles and the settings that go with them.
#[derive(Debug)]
pub struct Snapshot {
    pub profiles: Profiles,
    /// `Cache-Control: max-age` for JWKS documents.
    pub jwks_cache: Duration,
    /// Where the configuration came from.
    pub origin: String,
    /// When this configuration was loaded (not when keys last rotated).
    pub loaded_at: SystemTime,
}

/// The outcome of the last reload attempt, for `ListKeys` and logs.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    pub attempted_at: Option<SystemTime>,
    /// Why the last attempt failed; empty when it succeeded.
    pub error: Option<String>,
}

/// Why an admin action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("profile {0:?} does not exist")]
    UnknownProfile(String),
    #[error(
        "profile {0:?} signs with configured key files, not managed keys; stage a new key with not_before and reload instead"
    )]
    NotManaged(String),
    #[error("the configuration was not reloaded, the previous one keeps serving: {0}")]
    Reload(String),
    #[error("{0}")]
    Failed(String),
}

/// The result of a rotation started by an operator.
#[derive(Debug)]
pub struct Rotated {
    pub new_key: String,
    pub revoked: Vec<String>,
}

/// The service's changing state; see the module docs.
pub struct Live {
    current: ArcSwap<Snapshot>,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<State>,
    reload_status: Mutex<ReloadStatus>,
    wake: tokio::sync::Notify,
}

struct State {
    config: Config,
    managed: BTreeMap<String, Managed>,
}

/// One managed profile's keys, as on disk.
#[derive(Clone)]
struct Managed {
    profile: String,
    spec: RotationSpec,
    dir: PathBuf,
    records: Vec<KeyRecord>,
    keys: HashMap<String, Arc<Key>>,
    next_at: u64,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    profile: String,
    keys: Vec<KeyRecord>,
}

const STATE_FILE: &str = "state.json";

impl Live {
    /// Opens the managed key directories of `config`, brings every managed profile up to date
    /// (generating keys where needed) and builds the first snapshot.
    pub fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Live>> {
        let now = clock.unix_seconds();
        let managed = open_all(&config, &BTreeMap::new(), now)?;
        let snapshot = build_snapshot(&config, &managed, clock.now())?;
        Ok(Arc::new(Live {
            current: ArcSwap::from_pointee(snapshot),
            clock,
            state: tokio::sync::Mutex::new(State { config, managed }),
            reload_status: Mutex::new(ReloadStatus::default()),
            wake: tokio::sync::Notify::new(),
        }))
    }

    /// The snapshot to answer a call from.
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The clock every part of the service reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The outcome of the last reload.
    pub fn reload_status(&self) -> ReloadStatus {
        self.reload_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs the rotation plan of every managed profile at the clock's now and swaps in a new
    /// snapshot if any key was created or dropped. The rotation task calls this on schedule;
    /// tests call it after moving their clock.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let mut state = self.state.lock().await;
        let now = self.clock.unix_seconds();
        let mut changed = false;
        let mut failures = Vec::new();
        for managed in state.managed.values_mut() {
            match managed.catch_up(now) {
                Ok(applied) => changed |= applied,
                Err(e) => {
                    tracing::error!(profile = %managed.profile, error = %format!("{e:#}"), "key rotation failed; retrying shortly");
                    // A key file written before the failure is left for the next start to
                    // delete: if the failure came after state.json was renamed into place (a
                    // failed directory fsync), that file is already named there.
                    managed.next_at = now + 5;
                    failures.push(format!("profile {:?}: {e:#}", managed.profile));
                }
            }
        }
        if changed {
            self.swap(&state)?;
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(failures.join("; ")))
        }
    }

    /// Starts a rotation of `profile` now; see [`rotation::rotate_now`].
    pub async fn rotate(
        &self,
        profile: &str,
        revoke_previous: bool,
    ) -> Result<Rotated, AdminError> {
        let mut state = self.state.lock().await;
        let name = if profile.is_empty() {
            crate::profile::DEFAULT_PROFILE
        } else {
            profile
        };
        let now = self.clock.unix_seconds();
        let Some(managed) = state.managed.get_mut(name) else {
            return Err(if self.current().profiles.get(name).is_some() {
                AdminError::NotManaged(name.to_owned())
            } else {
                AdminError::UnknownProfile(name.to_owned())
            });
        };
        let plan = rotation::rotate_now(&managed.spec, &managed.records, now, revoke_previous);
        let revoked: Vec<String> = plan
            .drop
            .iter()
            .filter(|r| r.times.activate_at <= now)
            .map(|r| r.kid.clone())
            .collect();
        managed
            .apply(plan, now)
            .map_err(|e| AdminError::Failed(format!("{e:#}")))?;
        let new_key = managed
            .records
            .iter()
            .find(|r| r.times.state_at(now) == KeyState::Active)
            .map(|r| r.kid.clone())
            .unwrap_or_default();
        tracing::warn!(profile = name, new_kid = %new_key, revoked = ?revoked, "key rotated by an operator");
        self.swap(&state)
            .map_err(|e| AdminError::Failed(format!("{e:#}")))?;
        self.wake.notify_one();
        Ok(Rotated { new_key, revoked })
    }

    /// Reads the configuration and key files again. The new configuration replaces the old one
    /// only if all of it loads; otherwise the old one keeps serving and the reason is kept for
    /// `ListKeys`. Managed keys carry over untouched unless their rotation block changed.
    pub async fn reload(&self) -> Result<Arc<Snapshot>, AdminError> {
        let mut state = self.state.lock().await;
        let started = std::time::Instant::now();
        let result = (|| {
            let config = state.config.reload()?;
            let now = self.clock.unix_seconds();
            let managed = open_all(&config, &state.managed, now)?;
            let snapshot = build_snapshot(&config, &managed, self.clock.now())?;
            anyhow::Ok((config, managed, snapshot))
        })();
        let mut status = self.reload_status.lock().unwrap_or_else(|p| p.into_inner());
        status.attempted_at = Some(self.clock.now());
        match result {
            Ok((config, managed, snapshot)) => {
                if config.listen != state.config.listen
                    || config.http_listen != state.config.http_listen
                    || config.admin != state.config.admin
                {
                    tracing::warn!(
                        "server.listen, server.http_listen and server.admin take effect only after a restart"
                    );
                }
                let snapshot = Arc::new(snapshot);
                self.current.store(snapshot.clone());
                state.config = config;
                state.managed = managed;
                status.error = None;
                tracing::info!(
                    config = %snapshot.origin,
                    profiles = snapshot.profiles.len(),
                    reload_ms = started.elapsed().as_millis() as u64,
                    "configuration reloaded"
                );
                self.wake.notify_one();
                Ok(snapshot)
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(error = %reason, "reload refused; the previous configuration keeps serving");
                status.error = Some(reason.clone());
                Err(AdminError::Reload(reason))
            }
        }
    }

    /// Keeps managed keys on schedule until `shutdown` completes: plans at each profile's next
    /// deadline, and at least once a minute in case the wall clock jumped.
    pub async fn run_rotation(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::debug!(error = %e, "rotation tick had failures");
            }
            let wait = {
                let state = self.state.lock().await;
                let now = self.clock.unix_seconds();
                state
                    .managed
                    .values()
                    .map(|m| m.next_at.saturating_sub(now))
                    .min()
                    .unwrap_or(60)
                    .clamp(1, 60)
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(wait)) => {}
            }
        }
    }

    /// Swaps in the profiles of `state`; the configuration's load time stays the same.
    fn swap(&self, state: &State) -> anyhow::Result<()> {
        let snapshot = build_snapshot(&state.config, &state.managed, self.current().loaded_at)?;
        self.current.store(Arc::new(snapshot));
        Ok(())
    }
}

/// The managed profiles of `config`: carried over from `previous` where the rotation block is
/// unchanged, otherwise opened from disk and re-planned.
fn open_all(
    config: &Config,
    previous: &BTreeMap<String, Managed>,
    now: u64,
) -> anyhow::Result<BTreeMap<String, Managed>> {
    let mut managed = BTreeMap::new();
    for template in &config.profiles {
        let Some(spec) = &template.rotation else {
            continue;
        };
        let name = template.spec.name.clone();
        let dir = managed_dir(&config.data_dir, &name);
        let entry = match previous.get(&name) {
            Some(old) if old.spec == *spec && old.dir == dir => old.clone(),
            _ => {
                let in_profile = || format!("{}: profile {name:?}", config.origin);
                let mut opened =
                    Managed::open(&name, spec.clone(), dir).with_context(in_profile)?;
                opened.catch_up(now).with_context(in_profile)?;
                opened
            }
        };
        managed.insert(name, entry);
    }
    Ok(managed)
}

fn build_snapshot(
    config: &Config,
    managed: &BTreeMap<String, Managed>,
    loaded_at: SystemTime,
) -> anyhow::Result<Snapshot> {
    let mut profiles = Profiles::default();
    for template in &config.profiles {
        let name = &template.spec.name;
        let keys: Vec<_> = match managed.get(name) {
            Some(m) => m
                .records
                .iter()
                .filter_map(|r| m.keys.get(&r.kid).map(|k| (k.clone(), r.times)))
                .collect(),
            None => Vec::new(),
        };
        let profile = template
            .build(keys)
            .with_context(|| format!("{}: profile {name:?}", config.origin))?;
        // Names come from TOML table keys, which are unique.
        let _ = profiles.insert(profile);
    }
    Ok(Snapshot {
        profiles,
        jwks_cache: config.jwks_cache,
        origin: config.origin.clone(),
        loaded_at,
    })
}

impl Managed {
    /// Reads a managed profile's directory: state.json and every key it names. Files the state
    /// does not name (a crash between writing a key and recording it) are deleted.
    fn open(profile: &str, spec: RotationSpec, dir: PathBuf) -> anyhow::Result<Managed> {
        config::create_private_dir(&dir)?;
        let (records, keys) = read_state(&dir)?.unwrap_or_default();
        let managed = Managed {
            profile: profile.to_owned(),
            spec,
            dir,
            records,
            keys,
            next_at: 0,
        };
        managed.remove_unnamed_files();
        Ok(managed)
    }

    /// Plans at `now` and carries the plan out if it changes anything; says whether it did.
    fn catch_up(&mut self, now: u64) -> anyhow::Result<bool> {
        let plan = rotation::plan(&self.spec, &self.records, now);
        if plan.is_noop(&self.records) {
            self.next_at = plan.next_at;
            return Ok(false);
        }
        self.apply(plan, now)?;
        Ok(true)
    }

    /// Carries out a plan: new key files first, then the state, then deletions.
    fn apply(&mut self, plan: Plan, now: u64) -> anyhow::Result<()> {
        let rng = SystemRandom::new();
        let mut records = plan.keep;
        let mut keys = self.keys.clone();
        for times in &plan.create {
            let (kid, key, material) = new_key(self.spec.algorithm, &rng)?;
            let path = self.dir.join(key_file_name(&kid, self.spec.algorithm)?);
            config::write_private_file(&path, material.as_bytes())
                .with_context(|| format!("writing new key {}", path.display()))?;
            tracing::info!(profile = %self.profile, kid = %kid, alg = %self.spec.algorithm, activate_at = times.activate_at, "managed key generated and published");
            keys.insert(kid.clone(), Arc::new(key));
            records.push(KeyRecord {
                kid,
                algorithm: self.spec.algorithm,
                times: *times,
            });
        }
        records.sort_by_key(|r| (r.times.activate_at, r.times.retire_at));
        let state = StateFile {
            version: 1,
            profile: self.profile.clone(),
            keys: records.clone(),
        };
        let json = serde_json::to_vec_pretty(&state).context("encoding the key state")?;
        let state_path = self.dir.join(STATE_FILE);
        config::write_private_file(&state_path, &json)
            .with_context(|| format!("writing {}", state_path.display()))?;
        for dropped in &plan.drop {
            keys.remove(&dropped.kid);
            if let Ok(name) = key_file_name(&dropped.kid, dropped.algorithm) {
                let _ = fs::remove_file(self.dir.join(name));
            }
            let why = if now >= dropped.times.remove_at {
                "removed"
            } else {
                "dropped before it signed"
            };
            tracing::info!(profile = %self.profile, kid = %dropped.kid, "managed key {why}");
        }
        self.records = records;
        self.keys = keys;
        self.next_at = plan.next_at;
        Ok(())
    }

    fn remove_unnamed_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == STATE_FILE {
                continue;
            }
            let named = self
                .records
                .iter()
                .any(|r| key_file_name(&r.kid, r.algorithm).is_ok_and(|file| file == name));
            let ours =
                name.ends_with(".tmp") || name.ends_with(".pem") || name.ends_with(".secret");
            if ours && !named {
                tracing::info!(profile = %self.profile, file = %name, "deleting a key file the key state does not name (left by an interrupted rotation)");
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The managed key directory of `profile` under `data_dir`.
pub fn managed_dir(data_dir: &std::path::Path, profile: &str) -> PathBuf {
    data_dir.join("managed").join(profile)
}

/// Reads a managed key directory as a start-up would, without changing anything in it: the
/// records of `state.json` and every key they name, parsed. `None` when there is no state yet.
pub fn read_state(dir: &std::path::Path) -> anyhow::Result<Option<(Vec<KeyRecord>, KeyMap)>> {
    let state_path = dir.join(STATE_FILE);
    let records = match fs::read(&state_path) {
        Ok(bytes) => {
            let file: StateFile = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a key state file", state_path.display()))?;
            if file.version != 1 {
                bail!(
                    "{}: state version {} is not supported",
                    state_path.display(),
                    file.version
                );
            }
            file.keys
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", state_path.display())),
    };
    let mut keys = HashMap::new();
    for record in &records {
        let path = dir.join(key_file_name(&record.kid, record.algorithm)?);
        let bytes = fs::read(&path).with_context(|| {
            format!(
                "{} names key {:?}, but its key file cannot be read",
                state_path.display(),
                record.kid
            )
        })?;
        let key = KeyId::parse(&record.kid)
            .and_then(|id| Key::from_material(id, record.algorithm, &bytes))
            .with_context(|| format!("key file {}", path.display()))?;
        keys.insert(record.kid.clone(), Arc::new(key));
    }
    Ok(Some((records, keys)))
}

/// Managed keys by kid.
pub type KeyMap = HashMap<String, Arc<Key>>;

/// `<kid>.pem`, or `<kid>.secret` for HMAC; refuses kids that are not plain file names.
fn key_file_name(kid: &str, algorithm: Algorithm) -> anyhow::Result<String> {
    let plain = !kid.is_empty()
        && !kid.starts_with('.')
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plain {
        bail!("managed key id {kid:?} is not a plain file name");
    }
    let ext = if algorithm.family() == KeyFamily::Hmac {
        "secret"
    } else {
        "pem"
    };
    Ok(format!("{kid}.{ext}"))
}

/// Fresh key material and its kid: the RFC 7638 thumbprint, or for HMAC (whose thumbprint
/// would be derived from the secret) 16 random bytes.
fn new_key(algorithm: Algorithm, rng: &SystemRandom) -> anyhow::Result<(String, Key, String)> {
    let material = keys::generate(algorithm, rng)?;
    let key = Key::from_material(KeyId::parse("new")?, algorithm, material.as_bytes())?;
    let kid = match key.thumbprint() {
        Some(thumbprint) => thumbprint,
        None => {
            let mut bytes = [0u8; 16];
            rng.fill(&mut bytes).map_err(|_| keys::KeyError::Random)?;
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    let key = key.with_id(KeyId::parse(&kid)?);
    Ok((kid, key, material))
}
