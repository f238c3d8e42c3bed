//! A managed profile's key directory, `<data_dir>/managed/<profile>/`: one private key file per
//! key (`<kid>.pem`, or `<kid>.secret` for HMAC, mode 0600) and `state.json` with every key's
//! times. A new key's file is written (atomically) before the state names it, and a dropped
//! key's file is deleted only after the state stops naming it, so a crash at any point leaves
//! at worst an unnamed file, which the next start deletes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use crate::core::keys::{self, Algorithm, Key, KeyFamily, KeyId};
use crate::core::profile::ProfileName;
use crate::core::rotation::{self, KeyRecord, Plan, RotationSpec};
use crate::state::files;

/// One managed profile's keys, as on disk.
#[derive(Clone)]
pub(crate) struct Managed {
    pub(crate) profile: ProfileName,
    pub(crate) spec: RotationSpec,
    pub(crate) dir: PathBuf,
    pub(crate) records: Vec<KeyRecord>,
    pub(crate) keys: KeyMap,
    pub(crate) next_at: u64,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    profile: String,
    keys: Vec<KeyRecord>,
}

/// The key state file in a managed key directory.
pub const STATE_FILE: &str = "state.json";

impl Managed {
    /// Reads a managed profile's directory: state.json and every key it names. Files the state
    /// does not name (a crash between writing a key and recording it) are deleted.
    pub(crate) fn open(
        profile: ProfileName,
        spec: RotationSpec,
        dir: PathBuf,
    ) -> anyhow::Result<Managed> {
        files::create_private_dir(&dir)?;
        let (records, keys) = read_state(&dir)?.unwrap_or_default();
        let managed = Managed {
            profile,
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
    pub(crate) fn catch_up(&mut self, now: u64) -> anyhow::Result<bool> {
        let plan = rotation::plan(&self.spec, &self.records, now);
        if plan.is_noop(&self.records) {
            self.next_at = plan.next_at;
            return Ok(false);
        }
        self.apply(plan, now)?;
        Ok(true)
    }

    /// Carries out a plan: new key files first, then the state, then deletions.
    pub(crate) fn apply(&mut self, plan: Plan, now: u64) -> anyhow::Result<()> {
        let rng = SystemRandom::new();
        let mut records = plan.keep;
        let mut keys = self.keys.clone();
        for times in &plan.create {
            let (key, material) = keys::generate_named(self.spec.algorithm, &rng)?;
            let kid = key.id().clone();
            let path = self.dir.join(key_file_name(&kid, self.spec.algorithm)?);
            files::write_private(&path, material.as_bytes())
                .with_context(|| format!("writing new key {}", path.display()))?;
            tracing::info!(profile = %self.profile, kid = kid.as_str(), alg = %self.spec.algorithm, activate_at = times.activate_at, "managed key generated and published");
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
            profile: self.profile.to_string(),
            keys: records.clone(),
        };
        let json = serde_json::to_vec_pretty(&state).context("encoding the key state")?;
        let state_path = self.dir.join(STATE_FILE);
        files::write_private(&state_path, &json)
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
            tracing::info!(profile = %self.profile, kid = dropped.kid.as_str(), "managed key {why}");
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
pub fn managed_dir(data_dir: &Path, profile: &str) -> PathBuf {
    data_dir.join("managed").join(profile)
}

/// Reads a managed key directory as a start-up would, without changing anything in it: the
/// records of `state.json` and every key they name, parsed. `None` when there is no state yet.
pub fn read_state(dir: &Path) -> anyhow::Result<Option<(Vec<KeyRecord>, KeyMap)>> {
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
        let key = Key::from_material(record.kid.clone(), record.algorithm, &bytes)
            .with_context(|| format!("key file {}", path.display()))?;
        keys.insert(record.kid.clone(), Arc::new(key));
    }
    Ok(Some((records, keys)))
}

/// Managed keys by kid.
pub type KeyMap = HashMap<KeyId, Arc<Key>>;

/// `<kid>.pem`, or `<kid>.secret` for HMAC; refuses kids that are not plain file names.
fn key_file_name(kid: &KeyId, algorithm: Algorithm) -> anyhow::Result<String> {
    let kid = kid.as_str();
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
