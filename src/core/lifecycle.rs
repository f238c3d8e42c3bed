//! A token's life after it is signed: revocation, single use, refresh families and reuse
//! detection, as pure decisions over what the token store says.
//!
//! The store (`crate::state::store`) only keeps facts and does the atomic steps; every rule
//! about what those facts mean lives here: which token a revocation stops, how long an entry
//! must be kept, which claims a refreshed access token copies, and whether a spent refresh
//! token shown again is a lost answer (within the grace) or a stolen token (after it).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::core::profile::{Profile, ProfileName, Profiles, REGISTERED_CLAIMS};
use crate::core::random::Random;
use crate::core::token::{Failure, Refusal, Verified};

/// The claim that carries a token's family id: every access and refresh token descended from
/// one `IssuePair` carries the same value, so one entry in the store can stop them all.
pub const FAMILY_CLAIM: &str = "fam";

/// The claims a refreshed access token does not copy from the refresh token, as simplejwt's
/// `RefreshToken.access_token` leaves out (`no_copy_claims`); the service sets them anew.
pub const NOT_COPIED: [&str; 4] = ["token_type", "exp", "iat", "jti"];

/// What the token store keeps for a profile's tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// Verify consults the store: revoked tokens, subjects and families are refused.
    pub revocable: bool,
    /// The first valid Verify consumes the token; later ones answer `AlreadyUsed`.
    pub single_use: bool,
    /// Which profile's tokens refresh this one, and how.
    pub refresh: Option<RefreshRule>,
    /// Another profile names this one as its refresh profile. Its tokens carry families and
    /// are always checked against the store, so reuse detection can stop them.
    pub refreshes: bool,
}

impl Lifecycle {
    /// Whether Verify of this profile reads revocations from the store.
    pub fn checks_revocation(&self) -> bool {
        self.revocable || self.refreshes
    }

    /// Whether any call on this profile needs the token store.
    pub fn needs_store(&self) -> bool {
        self.checks_revocation() || self.single_use || self.refresh.is_some()
    }
}

/// A `[profiles.NAME.refresh]` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRule {
    /// The profile whose tokens refresh this one.
    pub profile: ProfileName,
    /// Refresh spends the presented refresh token and returns a new one in the same family.
    pub rotate: bool,
    /// A spent refresh token seen again less than this after it was spent is answered as the
    /// first time (the client lost the answer); later, the family is revoked. Zero: never.
    pub reuse_grace: Duration,
}

/// Why a lifecycle call cannot be done; all but `RefreshProfileGone` are the caller's doing.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "profile {0:?} has no refresh block; IssuePair and Refresh need [profiles.{0}.refresh]"
    )]
    NoRefresh(ProfileName),
    #[error("profile {0:?} is not revocable; set revocable = true to revoke its tokens")]
    NotRevocable(ProfileName),
    #[error("claims.{FAMILY_CLAIM}: is set by the service and cannot be given")]
    FamilyClaimGiven,
    #[error("refresh_token: refused ({}): {}", .0.failure, .0.detail)]
    RefreshRefused(Refusal),
    #[error("token: refused ({}): {}", .0.failure, .0.detail)]
    TokenRefused(Refusal),
    #[error("{0}: must not be empty")]
    Empty(&'static str),
    #[error("target: give one of token, token_id or subject")]
    NoTarget,
    #[error("profile {0:?}: its refresh profile is not served")]
    RefreshProfileGone(ProfileName),
    #[error("the system's random source failed")]
    Random,
}

/// The entries to read for one verified token.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'v> {
    pub token_id: Option<&'v str>,
    pub subject: &'v str,
    pub family: Option<&'v str>,
}

/// What the store knows about one token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Its token id is revoked.
    pub token_revoked: bool,
    /// Its subject's tokens issued at or before this time (Unix seconds) are revoked.
    pub subject_revoked_before: Option<u64>,
    /// Its family is revoked.
    pub family_revoked: bool,
}

/// The entries that decide whether `verified` is still good.
pub fn lookup(verified: &Verified) -> Lookup<'_> {
    Lookup {
        token_id: verified.token_id.as_deref(),
        subject: &verified.subject,
        family: family_of(verified),
    }
}

/// The token's family id, when it carries one as a string.
pub fn family_of(verified: &Verified) -> Option<&str> {
    verified.claims.get(FAMILY_CLAIM).and_then(Value::as_str)
}

/// Refuses a verified token the store's facts revoke.
pub fn check_facts(verified: &Verified, facts: &Facts) -> Result<(), Refusal> {
    let revoked = |detail: String| {
        Err(Refusal {
            failure: Failure::Revoked,
            detail,
        })
    };
    if facts.token_revoked {
        return revoked("the token was revoked".to_owned());
    }
    if facts.family_revoked {
        return revoked(
            "the token's family was revoked (a logout, or a refresh token used twice)".to_owned(),
        );
    }
    if let Some(before) = facts.subject_revoked_before {
        // A token without iat cannot show it came after the revocation, so it is refused.
        let issued = verified.claims.get("iat").and_then(Value::as_f64);
        if issued.is_none_or(|iat| iat <= before as f64) {
            return revoked(format!(
                "every token of this subject issued up to {before} (Unix time) was revoked"
            ));
        }
    }
    Ok(())
}

/// The token id a single-use profile consumes, or a refusal for a token without one.
pub fn single_use_id(verified: &Verified) -> Result<&str, Refusal> {
    verified.token_id.as_deref().ok_or_else(|| Refusal {
        failure: Failure::MissingClaim,
        detail: "the token has no \"jti\"; a single-use profile needs one to consume".to_owned(),
    })
}

/// The refusal for a single-use token seen a second time.
pub fn already_used() -> Refusal {
    Refusal {
        failure: Failure::AlreadyUsed,
        detail: "the token was already used; a single-use token is accepted once".to_owned(),
    }
}

/// Until when (Unix seconds) an entry about a token expiring at `expires_at` must be kept:
/// its `exp` plus the profile's leeway, after which Verify refuses it on its own.
pub fn token_horizon(profile: &Profile, expires_at: f64) -> u64 {
    (expires_at.max(0.0).ceil() as u64).saturating_add(profile.leeway().as_secs())
}

/// Until when an entry about any token the profile may have issued up to `now` must be kept
/// (a token id or a subject, whose tokens' `exp` the store does not know): the longest
/// lifetime the profile signs, plus its leeway.
pub fn profile_horizon(profile: &Profile, now: u64) -> u64 {
    now.saturating_add(profile.max_ttl().as_secs())
        .saturating_add(profile.leeway().as_secs())
}

/// The latest of `horizons`, for an entry that guards tokens of several profiles (a family).
pub fn latest(horizons: impl IntoIterator<Item = u64>) -> u64 {
    horizons.into_iter().max().unwrap_or(0)
}

/// Until when a family's revocation must be kept: the latest any token of the family may
/// expire, over `profile`, the profile that refreshes it and the profiles it refreshes.
pub fn family_horizon(profiles: &Profiles, profile: &Profile, now: u64) -> u64 {
    let related = profiles.sorted().into_iter().filter(|p| {
        p.name == profile.name
            || profile
                .lifecycle
                .refresh
                .as_ref()
                .is_some_and(|r| r.profile == p.name)
            || p.lifecycle
                .refresh
                .as_ref()
                .is_some_and(|r| r.profile == profile.name)
    });
    latest(
        related
            .map(|p| profile_horizon(p, now))
            .chain([profile_horizon(profile, now)]),
    )
}

/// What a Refresh that spends a refresh token does, given what the store holds for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendDecision {
    /// Never spent: record this spend and its answer.
    Record,
    /// Spent within the grace and its answer is still kept: answer that again.
    Replay,
    /// Spent before the grace: a stolen or replayed token. Revoke the family and refuse.
    Reused,
}

/// The reuse rule: `spent_at` is when the token was first spent (`None`: never), `answer_kept`
/// whether that first answer is still held, `grace` the profile's reuse_grace in seconds.
pub fn decide_spend(
    spent_at: Option<u64>,
    answer_kept: bool,
    now: u64,
    grace: u64,
) -> SpendDecision {
    match spent_at {
        None => SpendDecision::Record,
        Some(at) if answer_kept && now < at.saturating_add(grace) => SpendDecision::Replay,
        Some(_) => SpendDecision::Reused,
    }
}

/// The refusal for a refresh token spent before the grace.
pub fn reused() -> Refusal {
    Refusal {
        failure: Failure::Revoked,
        detail: "the refresh token was already used; its whole family is now revoked".to_owned(),
    }
}

/// The claims a refreshed token copies from the refresh token `refresh` (verified under
/// `refresh_profile`) when issued under `target`: all but [`NOT_COPIED`], as simplejwt does,
/// and but those the service sets itself (registered claims, subject claims, fixed claims,
/// the family), which `target`'s issue writes anew.
pub fn copied_claims(
    refresh: &Verified,
    refresh_profile: &Profile,
    target: &Profile,
) -> Map<String, Value> {
    refresh
        .claims
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !NOT_COPIED.contains(&name)
                && !REGISTERED_CLAIMS.contains(&name)
                && name != FAMILY_CLAIM
                && name != refresh_profile.subject_claim()
                && name != target.subject_claim()
                && !refresh_profile.fixed_claims.contains_key(name)
                && !target.fixed_claims.contains_key(name)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `claims` with the family id added; refused when the caller already set it.
pub fn with_family(
    mut claims: Map<String, Value>,
    family: &str,
) -> Result<Map<String, Value>, LifecycleError> {
    if claims.contains_key(FAMILY_CLAIM) {
        return Err(LifecycleError::FamilyClaimGiven);
    }
    claims.insert(FAMILY_CLAIM.to_owned(), Value::String(family.to_owned()));
    Ok(claims)
}

/// A fresh family id: 16 random bytes in base64url, like a token id.
pub fn new_family_id(random: &Random) -> Result<String, LifecycleError> {
    let bytes = random.id().map_err(|_| LifecycleError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_token_is_replayed_only_within_the_grace_and_while_its_answer_is_kept() {
        assert_eq!(decide_spend(None, false, 100, 10), SpendDecision::Record);
        assert_eq!(
            decide_spend(Some(100), true, 109, 10),
            SpendDecision::Replay
        );
        assert_eq!(
            decide_spend(Some(100), true, 110, 10),
            SpendDecision::Reused
        );
        assert_eq!(
            decide_spend(Some(100), false, 101, 10),
            SpendDecision::Reused
        );
        assert_eq!(decide_spend(Some(100), true, 100, 0), SpendDecision::Reused);
    }
}
