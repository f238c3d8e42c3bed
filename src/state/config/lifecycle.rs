//! `[store]` and each profile's `revocable`, `single_use` and `[profiles.NAME.refresh]`,
//! translated; then the one cross-profile check a refresh block needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use super::raw::{RawProfile, RawStore};
use super::{ProfileTemplate, duration};
use crate::core::clock::whole_seconds;
use crate::core::lifecycle::{Lifecycle, RefreshRule};
use crate::core::profile::ProfileName;

/// The embedded store's file, under the data directory unless `[store] path` says otherwise.
pub const DEFAULT_STORE_FILE: &str = "tokens.redb";

/// Where revocations, single-use marks and refresh families are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSettings {
    /// A crash-safe file (redb) that one process owns.
    Embedded { path: PathBuf },
    /// A Redis server that several replicas share.
    Redis { url: String },
}

/// A profile's lifecycle settings; `refreshes` is filled in by [`cross_check`].
pub(super) fn parse(raw: &RawProfile) -> anyhow::Result<Lifecycle> {
    let refresh = match &raw.refresh {
        None => None,
        Some(block) => {
            let profile = ProfileName::parse(&block.profile).context("refresh.profile")?;
            let reuse_grace = match block.reuse_grace.as_deref() {
                None => Duration::ZERO,
                Some(text) => {
                    let grace =
                        duration(Some(text), Duration::ZERO).context("refresh.reuse_grace")?;
                    if whole_seconds(grace).is_none() || grace > Duration::from_secs(300) {
                        bail!("refresh.reuse_grace must be whole seconds, at most 5m");
                    }
                    grace
                }
            };
            if !block.rotate && !reuse_grace.is_zero() {
                bail!(
                    "refresh.reuse_grace applies only with refresh.rotate = true (without rotation a refresh token is never spent)"
                );
            }
            Some(RefreshRule {
                profile,
                rotate: block.rotate,
                reuse_grace,
            })
        }
    };
    Ok(Lifecycle {
        revocable: raw.revocable,
        single_use: raw.single_use,
        refresh,
        refreshes: false,
    })
}

/// Every refresh block names another profile that can sign and is not single-use; that
/// profile is then marked as refreshing (its tokens are always checked against the store).
pub(super) fn cross_check(profiles: &mut [ProfileTemplate]) -> anyhow::Result<()> {
    let rules: Vec<(ProfileName, ProfileName)> = profiles
        .iter()
        .filter_map(|p| {
            let rule = p.spec.lifecycle.refresh.as_ref()?;
            Some((p.spec.name.clone(), rule.profile.clone()))
        })
        .collect();
    for (access, target) in rules {
        let in_profile = || format!("profile {access:?}: refresh.profile {target:?}");
        if access == target {
            bail!(
                "{}: a profile cannot refresh itself; name the refresh profile",
                in_profile()
            );
        }
        let known: Vec<String> = profiles
            .iter()
            .map(|p| format!("{:?}", p.spec.name.as_str()))
            .collect();
        let Some(refresh) = profiles.iter_mut().find(|p| p.spec.name == target) else {
            return Err(anyhow!(
                "{}: is not a configured profile (configured: {})",
                in_profile(),
                known.join(", ")
            ));
        };
        if refresh.spec.signing_keys.is_empty() && refresh.rotation.is_none() {
            bail!(
                "{}: the refresh profile is verify-only; it must sign refresh tokens",
                in_profile()
            );
        }
        if refresh.spec.lifecycle.single_use {
            bail!(
                "{}: a refresh profile cannot be single_use (rotate = true spends refresh tokens)",
                in_profile()
            );
        }
        if refresh.spec.lifecycle.refresh.is_some() {
            bail!(
                "{}: the refresh profile has a refresh block of its own; chains are not supported",
                in_profile()
            );
        }
        refresh.spec.lifecycle.refreshes = true;
    }
    Ok(())
}

/// The `[store]` table checked; `None` when none is configured and no profile needs one.
pub(super) fn store(
    raw: Option<&RawStore>,
    data_dir: &Path,
    needed: bool,
) -> anyhow::Result<Option<StoreSettings>> {
    let Some(raw) = raw else {
        return Ok(needed.then(|| StoreSettings::Embedded {
            path: data_dir.join(DEFAULT_STORE_FILE),
        }));
    };
    match raw.backend.as_deref().unwrap_or("embedded") {
        "embedded" => {
            if raw.url.is_some() {
                bail!("store.url applies only to backend = \"redis\"");
            }
            let path = raw.path.as_deref().unwrap_or(Path::new(DEFAULT_STORE_FILE));
            Ok(Some(StoreSettings::Embedded {
                path: data_dir.join(path),
            }))
        }
        "redis" => {
            if raw.path.is_some() {
                bail!("store.path applies only to backend = \"embedded\"");
            }
            let Some(url) = &raw.url else {
                bail!(
                    "store.url is required with backend = \"redis\" (e.g. \"redis://127.0.0.1:6379/0\")"
                );
            };
            crate::state::store::check_redis_url(url).context("store.url")?;
            Ok(Some(StoreSettings::Redis { url: url.clone() }))
        }
        other => bail!(
            "store.backend {other:?} is not a store; use \"embedded\" (the default) or \"redis\""
        ),
    }
}
