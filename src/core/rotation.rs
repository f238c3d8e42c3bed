//! Key rotation as a pure function of (key records, now): which managed keys to create, which
//! to drop, and when to look again. No clock, no files, no randomness here; [`crate::state::live`]
//! carries the plan out (generate, write, persist, swap) and feeds the result back in.
//!
//! A managed key moves through four states on times fixed when it is created:
//!
//! ```text
//!   publish_at ──published──▶ activate_at ──active──▶ retire_at ──retired──▶ remove_at ─▶ removed
//!               (in JWKS,                 (signs)                 (verifies,
//!                verifies)                                         no longer signs)
//! ```
//!
//! Active windows are contiguous and never overlap, so exactly one key signs at any instant.
//! A key is published `publish_ahead` before it signs (max_ttl + JWKS cache lifetime by
//! default), so every relying party that honours the cache lifetime holds it before the first
//! token it signed; it verifies `verify_after` (max_ttl + leeway) past its retirement, so every
//! token it signed expires before it is removed.

use serde::{Deserialize, Serialize};

use crate::core::keys::{Algorithm, KeyId};

/// A profile's `[profiles.NAME.rotation]` block, with its derived lifetimes in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationSpec {
    /// The algorithm of the keys to generate.
    pub algorithm: Algorithm,
    /// How long each key signs.
    pub rotate_every: u64,
    /// How long before it signs a key is published.
    pub publish_ahead: u64,
    /// How long after it stops signing a key still verifies (the profile's max_ttl + leeway).
    pub verify_after: u64,
}

/// When a key enters each state, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTimes {
    pub publish_at: u64,
    pub activate_at: u64,
    pub retire_at: u64,
    pub remove_at: u64,
}

/// A managed key as persisted: its id, algorithm and times. The key material lives beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: KeyId,
    #[serde(with = "algorithm_name")]
    pub algorithm: Algorithm,
    #[serde(flatten)]
    pub times: KeyTimes,
}

/// Where a key is in its life at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Not yet in any verify set or JWKS (only file keys staged far ahead can be here).
    Pending,
    /// In the JWKS and the verify set, not yet signing.
    Published,
    /// Signing (and verifying).
    Active,
    /// Verifying tokens it signed, no longer signing.
    Retired,
    /// Gone from verify sets and JWKS.
    Removed,
}

impl KeyState {
    /// A stable lower-case name for logs and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Removed => "removed",
        }
    }
}

impl KeyTimes {
    /// The state these times give at `now`.
    pub fn state_at(&self, now: u64) -> KeyState {
        if now >= self.remove_at {
            KeyState::Removed
        } else if now >= self.retire_at {
            KeyState::Retired
        } else if now >= self.activate_at {
            KeyState::Active
        } else if now >= self.publish_at {
            KeyState::Published
        } else {
            KeyState::Pending
        }
    }

    /// Times for a key that signs from `activate_at` for one rotation period.
    fn scheduled(spec: &RotationSpec, publish_at: u64, activate_at: u64) -> KeyTimes {
        let retire_at = activate_at.saturating_add(spec.rotate_every);
        KeyTimes {
            publish_at,
            activate_at,
            retire_at,
            remove_at: retire_at.saturating_add(spec.verify_after),
        }
    }
}

/// What to do now: the records to keep (times possibly moved), keys to create, keys to drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Existing keys that stay, in activation order.
    pub keep: Vec<KeyRecord>,
    /// New keys to generate, in activation order; their kids come from their material.
    pub create: Vec<KeyTimes>,
    /// Keys to forget (their material may be deleted once the new state is persisted).
    pub drop: Vec<KeyRecord>,
    /// When the plan changes next if nothing else happens; look again then.
    pub next_at: u64,
}

impl Plan {
    /// Whether carrying the plan out changes anything.
    pub fn is_noop(&self, before: &[KeyRecord]) -> bool {
        self.create.is_empty() && self.drop.is_empty() && self.keep == before
    }
}

/// The rotation step: drop removed keys and stale pending ones, make sure one key is active
/// now, and make sure its successor is published `publish_ahead` before it takes over.
///
/// Idempotent: planning again on the result (with the created keys added) at the same `now`
/// creates and drops nothing, which is what makes a restart at any point safe.
pub fn plan(spec: &RotationSpec, records: &[KeyRecord], now: u64) -> Plan {
    let mut keep: Vec<KeyRecord> = Vec::new();
    let mut drop: Vec<KeyRecord> = Vec::new();
    for record in records {
        let t = record.times;
        let removed = now >= t.remove_at;
        // A key that has not signed yet and no longer fits the schedule (the rotation block
        // changed) is safe to forget: no token carries its kid.
        // A changed rotate_every applies from the next key planned, so only the algorithm counts.
        let stale = now < t.activate_at && record.algorithm != spec.algorithm;
        if removed || stale {
            drop.push(record.clone());
        } else {
            keep.push(record.clone());
        }
    }
    keep.sort_by_key(|r| (r.times.activate_at, r.times.retire_at));

    let has_active = keep
        .iter()
        .any(|r| r.times.state_at(now) == KeyState::Active);
    let mut create = Vec::new();
    // The newest scheduled end of signing, which a successor must take over from.
    let mut last_retire: Option<u64>;
    if has_active {
        // Pending keys must chain onto the active one without a gap.
        let mut chain_end = None;
        let mut kept = Vec::with_capacity(keep.len());
        for record in keep {
            let t = record.times;
            if now < t.activate_at && chain_end != Some(t.activate_at) {
                drop.push(record);
                continue;
            }
            if t.activate_at <= now || chain_end == Some(t.activate_at) {
                chain_end = Some(t.retire_at.max(chain_end.unwrap_or(0)));
            }
            kept.push(record);
        }
        keep = kept;
        last_retire = chain_end;
    } else {
        // Nothing signs now (first start, or back after a long stop): pending keys cannot have
        // been fetched in time to matter, so start a fresh key at once.
        let (pending, past): (Vec<_>, Vec<_>) =
            keep.into_iter().partition(|r| now < r.times.activate_at);
        drop.extend(pending);
        keep = past;
        let first = KeyTimes::scheduled(spec, now, now);
        last_retire = Some(first.retire_at);
        create.push(first);
    }

    // A successor created late (the service was busy or stopped) would sign before relying
    // parties could have fetched it; rather than that, the key it follows signs a little longer.
    let publish_by = now.saturating_add(spec.publish_ahead);
    if has_active
        && let Some(end) = last_retire
        && end < publish_by
        && let Some(last) = keep.iter_mut().rfind(|r| r.times.retire_at == end)
    {
        last.times.retire_at = publish_by;
        last_retire = Some(publish_by);
    }

    let mut end = last_retire.unwrap_or(now);
    while end <= publish_by {
        let next = KeyTimes::scheduled(spec, now, end);
        end = next.retire_at;
        create.push(next);
        if spec.rotate_every == 0 {
            break;
        }
    }

    // Tokens signed under a longer max_ttl need their key to verify longer; never shorter.
    for record in &mut keep {
        let t = &mut record.times;
        t.remove_at = t
            .remove_at
            .max(t.retire_at.saturating_add(spec.verify_after));
    }

    let next_at = keep
        .iter()
        .map(|r| r.times.remove_at)
        .chain(create.iter().map(|t| t.remove_at))
        .chain(std::iter::once(end.saturating_sub(spec.publish_ahead)))
        .filter(|&t| t > now)
        .min()
        .unwrap_or(now.saturating_add(spec.rotate_every.max(1)));
    Plan {
        keep,
        create,
        drop,
        next_at,
    }
}

/// An immediate rotation (the `RotateKey` admin call): the active key stops signing now and a
/// new key signs from now. With `revoke_previous` the old key also stops verifying at once.
pub fn rotate_now(
    spec: &RotationSpec,
    records: &[KeyRecord],
    now: u64,
    revoke_previous: bool,
) -> Plan {
    let mut revoked = Vec::new();
    let mut moved: Vec<KeyRecord> = Vec::with_capacity(records.len());
    for record in records {
        let mut record = record.clone();
        let t = &mut record.times;
        if t.state_at(now) == KeyState::Active {
            // Tokens it signed may have been issued under a longer max_ttl than today's (a
            // reload shortened it), and its planned verify span already covers that.
            let verify_span = t
                .remove_at
                .saturating_sub(t.retire_at)
                .max(spec.verify_after);
            t.retire_at = now;
            if revoke_previous {
                t.remove_at = now;
                revoked.push(record.clone());
                continue;
            }
            t.remove_at = now.saturating_add(verify_span);
        }
        moved.push(record);
    }
    // With no key active, `plan` drops the pending successors and starts a new key now.
    let mut plan = plan(spec, &moved, now);
    plan.drop.extend(revoked);
    plan
}

mod algorithm_name {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use crate::core::keys::Algorithm;

    pub fn serialize<S: Serializer>(alg: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(alg.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
        let name = String::deserialize(d)?;
        Algorithm::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown algorithm {name:?}")))
    }
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
