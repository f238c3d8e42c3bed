//! The live state: the profiles served right now, and the two things that change them while the
//! service runs, managed key rotation and configuration reload.
//!
//! Readers (every RPC, every JWKS request) take the current [`Snapshot`] from an `ArcSwap`
//! without locking; a call that started on one snapshot finishes on it. Writers (the rotation
//! task, `RotateKey`, `Reload`, SIGHUP) are serialized by one async mutex, build a complete new
//! snapshot off to the side, and swap it in only when every profile in it was built.
//!
//! Managed keys live in their own directories; see [`crate::state::managed`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow};
use arc_swap::{ArcSwap, ArcSwapOption};

use crate::core::clock::Clock;
use crate::core::keys::KeyId;
use crate::core::profile::{self, ProfileName, Profiles};
use crate::core::rotation::{self, KeyState};
use crate::state::config::tls::{Fingerprint, TlsMaterial};
use crate::state::config::{Audit, Callers, Config};
use crate::state::federated::RemoteJwks;
use crate::state::managed::{Managed, managed_dir};

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
    /// The remote key sets of federated profiles, by profile name.
    pub remote: BTreeMap<ProfileName, Arc<RemoteJwks>>,
    /// Who may call, reloaded with the configuration; rotation keeps the same ones (and so
    /// their rate budgets).
    pub callers: Arc<Callers>,
    /// How audit records write subjects.
    pub audit: Arc<Audit>,
}

/// The outcome of the last reload attempt, for `ListKeys` and logs.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    pub attempted_at: Option<SystemTime>,
    /// Why the last attempt failed; empty when it succeeded.
    pub error: Option<String>,
}

/// How many reloads were applied and how many refused since start, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    pub ok: u64,
    pub refused: u64,
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
    // Both show the whole context chain (`{:#}`) in their message, so neither also offers it
    // as `source`: a reporter walking the chain would print every cause twice.
    /// The new configuration did not load; the chain names the file and the reason.
    #[error("the configuration was not reloaded, the previous one keeps serving: {0:#}")]
    Reload(anyhow::Error),
    /// Writing or swapping in the new keys failed: the service's fault, not the caller's.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// The result of a rotation started by an operator.
#[derive(Debug)]
pub struct Rotated {
    pub new_key: KeyId,
    pub revoked: Vec<KeyId>,
}

/// The service's changing state; see the module docs.
pub struct Live {
    current: ArcSwap<Snapshot>,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<State>,
    reload_status: Mutex<ReloadStatus>,
    /// The gRPC address actually bound (a `--listen` override included), which a reloaded
    /// configuration must be safe to serve on.
    served_on: Mutex<Option<std::net::SocketAddr>>,
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
    wake: tokio::sync::Notify,
    /// The certificate and client CA new TLS handshakes use; `None` when serving plaintext.
    tls: ArcSwapOption<TlsMaterial>,
}

/// How often the TLS files are read to notice a rotated certificate.
pub const TLS_POLL_INTERVAL: Duration = Duration::from_secs(2);

struct State {
    config: Config,
    managed: BTreeMap<ProfileName, Managed>,
    remote: BTreeMap<ProfileName, Arc<RemoteJwks>>,
    /// The TLS file contents last refused, so a broken file is reported once, not every poll.
    tls_refused: Option<Fingerprint>,
}

impl Live {
    /// Opens the managed key directories of `config`, brings every managed profile up to date
    /// (generating keys where needed) and builds the first snapshot.
    pub fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Live>> {
        let now = clock.unix_seconds();
        let managed = open_all(&config, &BTreeMap::new(), now)?;
        let remote = open_remote(&config, &BTreeMap::new(), &clock)?;
        let snapshot = build_snapshot(&config, &managed, &remote, clock.now())?;
        Ok(Arc::new(Live {
            current: ArcSwap::from_pointee(snapshot),
            clock,
            tls: ArcSwapOption::new(config.tls.clone()),
            state: tokio::sync::Mutex::new(State {
                config,
                managed,
                remote,
                tls_refused: None,
            }),
            reload_status: Mutex::new(ReloadStatus::default()),
            served_on: Mutex::new(None),
            reloads_ok: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
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

    /// The certificate and client CA for the next TLS handshake; `None` when serving plaintext.
    pub fn tls(&self) -> Option<Arc<TlsMaterial>> {
        self.tls.load_full()
    }

    /// The outcome of the last reload.
    pub fn reload_status(&self) -> ReloadStatus {
        self.reload_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the gRPC address being served, so a reload that drops every caller is refused
    /// on a non-loopback address as start-up would refuse it.
    pub fn serving_on(&self, addr: std::net::SocketAddr) {
        *self.served_on.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    /// Reloads applied and refused since start.
    pub fn reload_counts(&self) -> ReloadCounts {
        ReloadCounts {
            ok: self.reloads_ok.load(Ordering::Relaxed),
            refused: self.reloads_refused.load(Ordering::Relaxed),
        }
    }

    /// Runs the rotation plan of every managed profile at the clock's now and swaps in a new
    /// snapshot if any key was created or dropped, then refreshes the remote key sets that are
    /// due. The rotation task calls this on schedule; tests call it after moving their clock.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let rotated = self.rotate_due().await;
        self.refresh_remote_keys().await;
        rotated
    }

    /// Fetches every remote key set whose background refresh is due (three quarters into its
    /// cache lifetime, or `jwks_refetch_min` after a failure), all at once.
    pub async fn refresh_remote_keys(&self) {
        let remote: Vec<Arc<RemoteJwks>> = self.current().remote.values().cloned().collect();
        let mut fetches = tokio::task::JoinSet::new();
        for set in remote {
            fetches.spawn(async move { set.refresh_if_due().await });
        }
        while fetches.join_next().await.is_some() {}
    }

    async fn rotate_due(&self) -> anyhow::Result<()> {
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
        let name = profile::requested(profile);
        let now = self.clock.unix_seconds();
        let Some(managed) = state.managed.get_mut(name) else {
            return Err(if self.current().profiles.get(name).is_some() {
                AdminError::NotManaged(name.to_owned())
            } else {
                AdminError::UnknownProfile(name.to_owned())
            });
        };
        let plan = rotation::rotate_now(&managed.spec, &managed.records, now, revoke_previous);
        let revoked: Vec<KeyId> = plan
            .drop
            .iter()
            .filter(|r| r.times.activate_at <= now)
            .map(|r| r.kid.clone())
            .collect();
        managed.apply(plan, now).map_err(AdminError::Failed)?;
        let new_key = managed
            .records
            .iter()
            .find(|r| r.times.state_at(now) == KeyState::Active)
            .map(|r| r.kid.clone())
            // rotate_now always leaves a key active at `now`; not finding one is our fault.
            .ok_or_else(|| AdminError::Failed(anyhow!("the rotation left no active key")))?;
        tracing::warn!(profile = name, new_kid = new_key.as_str(), revoked = ?revoked, "key rotated by an operator");
        self.swap(&state).map_err(AdminError::Failed)?;
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
            let served_on = *self.served_on.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(addr) = served_on {
                config.check_exposure(addr)?;
            }
            let now = self.clock.unix_seconds();
            let managed = open_all(&config, &state.managed, now)?;
            let remote = open_remote(&config, &state.remote, &self.clock)?;
            let snapshot = build_snapshot(&config, &managed, &remote, self.clock.now())?;
            anyhow::Ok((config, managed, remote, snapshot))
        })();
        let mut status = self.reload_status.lock().unwrap_or_else(|p| p.into_inner());
        status.attempted_at = Some(self.clock.now());
        match result {
            Ok((config, managed, remote, snapshot)) => {
                if config.listen != state.config.listen
                    || config.http_listen != state.config.http_listen
                    || config.admin != state.config.admin
                {
                    tracing::warn!(
                        "server.listen, server.http_listen and server.admin take effect only after a restart"
                    );
                }
                self.swap_tls(&state.config, &config);
                state.tls_refused = None;
                let snapshot = Arc::new(snapshot);
                self.current.store(snapshot.clone());
                state.config = config;
                state.managed = managed;
                state.remote = remote;
                status.error = None;
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
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
                self.reloads_refused.fetch_add(1, Ordering::Relaxed);
                Err(AdminError::Reload(e))
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
                let remote = state.remote.values().map(|r| r.next_refresh_at());
                state
                    .managed
                    .values()
                    .map(|m| m.next_at)
                    .chain(remote)
                    .map(|at| at.saturating_sub(now))
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

    /// Reads the TLS files again if their contents changed since they were loaded, and serves
    /// the new certificate to new handshakes (established connections keep theirs). A file
    /// that does not load leaves the previous certificate serving and is reported like a
    /// refused reload, once per content. Returns whether a new certificate is served.
    pub async fn check_tls_files(&self) -> bool {
        let mut state = self.state.lock().await;
        let Some(current) = self.tls() else {
            return false;
        };
        let files = current.files().clone();
        let now_on_disk = files.fingerprint();
        if now_on_disk == current.fingerprint() || state.tls_refused == Some(now_on_disk) {
            return false;
        }
        let loaded = files.load();
        let mut status = self.reload_status.lock().unwrap_or_else(|p| p.into_inner());
        status.attempted_at = Some(self.clock.now());
        match loaded {
            Ok(material) => {
                let leaf = material.leaf();
                tracing::info!(
                    cert_file = %files.cert_file.display(),
                    subject = %leaf.subject,
                    not_after = %leaf.not_after,
                    "TLS certificate reloaded; new connections use it"
                );
                let material = Arc::new(material);
                self.tls.store(Some(material.clone()));
                state.config.tls = Some(material);
                state.tls_refused = None;
                status.error = None;
                true
            }
            Err(e) => {
                let reason = format!(
                    "{}: {e:#}; the previous certificate keeps serving",
                    state.config.origin
                );
                tracing::error!(error = %reason, "TLS files changed but do not load");
                status.error = Some(reason);
                // Reported once. Files that changed again while being read have another
                // fingerprint at the next poll, and are tried then.
                state.tls_refused = Some(now_on_disk);
                false
            }
        }
    }

    /// Calls [`Live::check_tls_files`] every [`TLS_POLL_INTERVAL`] until `shutdown` completes.
    pub async fn run_tls_watch(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(TLS_POLL_INTERVAL) => {}
            }
            self.check_tls_files().await;
        }
    }

    /// After a reload: the new configuration's certificate for new handshakes. Turning TLS on
    /// or off needs a restart, since the listeners were set up for one or the other.
    fn swap_tls(&self, old: &Config, new: &Config) {
        match (&old.tls, &new.tls) {
            (Some(_), Some(material)) => self.tls.store(Some(material.clone())),
            (None, None) => {}
            _ => tracing::warn!(
                "[server.tls] was added or removed; TLS is turned on or off only by a restart"
            ),
        }
    }

    /// Swaps in the profiles of `state`; the configuration's load time stays the same.
    fn swap(&self, state: &State) -> anyhow::Result<()> {
        let snapshot = build_snapshot(
            &state.config,
            &state.managed,
            &state.remote,
            self.current().loaded_at,
        )?;
        self.current.store(Arc::new(snapshot));
        Ok(())
    }
}

/// The managed profiles of `config`: carried over from `previous` where the rotation block is
/// unchanged, otherwise opened from disk and re-planned.
fn open_all(
    config: &Config,
    previous: &BTreeMap<ProfileName, Managed>,
    now: u64,
) -> anyhow::Result<BTreeMap<ProfileName, Managed>> {
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
                    Managed::open(name.clone(), spec.clone(), dir).with_context(in_profile)?;
                opened.catch_up(now).with_context(in_profile)?;
                opened
            }
        };
        managed.insert(name, entry);
    }
    Ok(managed)
}

/// The remote key sets of `config`'s federated profiles: carried over from `previous` (with
/// their cached keys) where the settings are unchanged, otherwise new and not yet fetched.
fn open_remote(
    config: &Config,
    previous: &BTreeMap<ProfileName, Arc<RemoteJwks>>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<BTreeMap<ProfileName, Arc<RemoteJwks>>> {
    let mut remote = BTreeMap::new();
    for template in &config.profiles {
        let Some(settings) = &template.remote else {
            continue;
        };
        let name = template.spec.name.clone();
        let set = match previous.get(&name) {
            Some(old) if old.settings() == settings => old.clone(),
            _ => Arc::new(
                RemoteJwks::new(name.clone(), settings.clone(), clock.clone())
                    .with_context(|| format!("{}: profile {name:?}", config.origin))?,
            ),
        };
        remote.insert(name, set);
    }
    Ok(remote)
}

fn build_snapshot(
    config: &Config,
    managed: &BTreeMap<ProfileName, Managed>,
    remote: &BTreeMap<ProfileName, Arc<RemoteJwks>>,
    loaded_at: SystemTime,
) -> anyhow::Result<Snapshot> {
    let mut profiles = Profiles::default();
    for template in &config.profiles {
        let name = &template.spec.name;
        let keys: Vec<_> = match managed.get(name.as_str()) {
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
        remote: remote.clone(),
        callers: config.callers.clone(),
        audit: config.audit.clone(),
    })
}
