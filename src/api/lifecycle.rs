//! IssuePair, Refresh, Revoke and the store step of Verify: request → core decisions → one
//! store step → answer. The rules (which claims a refresh copies, what the store's facts mean,
//! how long an entry is kept) are `core::lifecycle`'s; the atomic steps are the store's.
//!
//! Also the store's upkeep task: health for [`HEALTH_NAME`] and the embedded store's sweep.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::convert::issued_to_proto;
use crate::api::error::ApiError;
use crate::core::lifecycle::{
    self as rules, LifecycleError, RefreshRule, check_facts, copied_claims, family_of,
    token_horizon,
};
use crate::core::profile::Profile;
use crate::core::random::Random;
use crate::core::token::{self, Failure, IssueRequest, Issued, Refusal, Verified};
use crate::proto;
use crate::proto::revoke_request::Target;
use crate::state::live::Snapshot;
use crate::state::store::{HEALTH_NAME, Spend, Spent, Store, StoreError};

/// How often the store's health is checked.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How often the embedded store deletes expired entries.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The calls that read or change the token store.
pub struct TokenLifecycle {
    store: Arc<Store>,
}

impl TokenLifecycle {
    /// Lifecycle calls on `store`.
    pub fn new(store: Arc<Store>) -> TokenLifecycle {
        TokenLifecycle { store }
    }

    /// The store step of Verify: a revocable profile refuses revoked tokens, a single-use one
    /// consumes the token (exactly one caller wins). Other profiles never touch the store.
    pub async fn check(
        &self,
        profile: &Profile,
        verified: Verified,
    ) -> Result<Result<Verified, Refusal>, ApiError> {
        let lifecycle = profile.lifecycle();
        if lifecycle.checks_revocation() {
            let facts = self
                .store
                .facts(profile.name(), rules::lookup(&verified))
                .await?;
            if let Err(refusal) = check_facts(&verified, &facts) {
                return Ok(Err(refusal));
            }
        }
        if lifecycle.single_use {
            let id = match rules::single_use_id(&verified) {
                Ok(id) => id,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let until = token_horizon(profile, verified.expires_at);
            if !self.store.consume(profile.name(), id, until).await? {
                return Ok(Err(rules::already_used()));
            }
        }
        Ok(Ok(verified))
    }

    /// An access token under `access` and a refresh token under its refresh profile, both
    /// with the request's claims and one new family id.
    pub fn issue_pair(
        &self,
        snapshot: &Snapshot,
        access: &Profile,
        request: IssueRequest,
        now: SystemTime,
        random: &Random,
    ) -> Result<proto::IssuePairResponse, ApiError> {
        let (_, refresh_profile) = refresh_of(snapshot, access)?;
        let family = rules::new_family_id(random)?;
        let refresh_request = IssueRequest {
            subject: request.subject.clone(),
            claims: rules::with_family(request.claims.clone(), &family)?,
            audience: Vec::new(),
            ttl: None,
        };
        let access_request = IssueRequest {
            claims: rules::with_family(request.claims, &family)?,
            ..request
        };
        let access_token = token::issue(access, access_request, now, random)?;
        let refresh_token = token::issue(refresh_profile, refresh_request, now, random)?;
        Ok(pair(access_token, Some(refresh_token), family))
    }

    /// Trades a refresh token for a new access token (and, with rotate, a new refresh token),
    /// refusing it as Verify would, and applying the reuse rule.
    pub async fn refresh(
        &self,
        snapshot: &Snapshot,
        access: &Profile,
        refresh_token: &str,
        now: SystemTime,
        random: &Random,
    ) -> Result<proto::IssuePairResponse, ApiError> {
        let (rule, refresh_profile) = refresh_of(snapshot, access)?;
        if refresh_token.is_empty() {
            return Err(LifecycleError::Empty("refresh_token").into());
        }
        let refused = |r: Refusal| ApiError::from(LifecycleError::RefreshRefused(r));
        let verified = token::verify(refresh_profile, refresh_token, None, now).map_err(refused)?;
        let (Some(family), Some(token_id)) = (family_of(&verified), verified.token_id.as_deref())
        else {
            return Err(refused(Refusal {
                failure: Failure::MissingClaim,
                detail: "a refresh token carries \"jti\" and \"fam\"; refresh tokens come from IssuePair".to_owned(),
            }));
        };
        let facts = self
            .store
            .facts(refresh_profile.name(), rules::lookup(&verified))
            .await?;
        check_facts(&verified, &facts).map_err(refused)?;

        let renewed = |target: &Profile| -> Result<Issued, ApiError> {
            let claims = copied_claims(&verified, refresh_profile, target);
            let request = IssueRequest {
                subject: verified.subject.clone(),
                claims: rules::with_family(claims, family)?,
                audience: Vec::new(),
                ttl: None,
            };
            Ok(token::issue(target, request, now, random)?)
        };
        let access_token = renewed(access)?;
        if !rule.rotate {
            return Ok(pair(access_token, None, family.to_owned()));
        }
        let answer = pair(
            access_token,
            Some(renewed(refresh_profile)?),
            family.to_owned(),
        );
        let now_secs = unix(now);
        let spend = Spend {
            profile: refresh_profile.name(),
            token_id,
            family,
            now: now_secs,
            grace: rule.reuse_grace.as_secs(),
            answer: answer.encode_to_vec(),
            spent_until: token_horizon(refresh_profile, verified.expires_at),
            family_until: rules::family_horizon(&snapshot.profiles, access, now_secs),
        };
        match self.store.spend(spend).await? {
            Spent::First => Ok(answer),
            Spent::Replay(first) => {
                proto::IssuePairResponse::decode(first.as_slice()).map_err(|e| {
                    StoreError::Unavailable {
                        backend: self.store.backend(),
                        cause: format!("a kept answer does not decode: {e}"),
                    }
                    .into()
                })
            }
            Spent::Reused => Err(refused(rules::reused())),
        }
    }

    /// Revokes a whole token (verified first; its family too, when it has one), a token id or
    /// a subject's tokens issued up to now.
    pub async fn revoke(
        &self,
        snapshot: &Snapshot,
        profile: &Profile,
        target: Option<Target>,
        now: SystemTime,
    ) -> Result<proto::RevokeResponse, ApiError> {
        if !profile.lifecycle().checks_revocation() {
            return Err(LifecycleError::NotRevocable(name_of(profile)).into());
        }
        let now_secs = unix(now);
        let mut answer = proto::RevokeResponse::default();
        let remembered = match target {
            None => return Err(LifecycleError::NoTarget.into()),
            Some(Target::Token(token)) => {
                if token.is_empty() {
                    return Err(LifecycleError::Empty("token").into());
                }
                let verified = token::verify(profile, &token, None, now)
                    .map_err(LifecycleError::TokenRefused)?;
                let family = family_of(&verified);
                if verified.token_id.is_none() && family.is_none() {
                    return Err(LifecycleError::TokenRefused(Refusal {
                        failure: Failure::MissingClaim,
                        detail: "the token has no \"jti\"; revoke its subject instead".to_owned(),
                    })
                    .into());
                }
                let mut until = token_horizon(profile, verified.expires_at);
                if let Some(id) = &verified.token_id {
                    self.store.revoke_token(profile.name(), id, until).await?;
                    answer.token_id.clone_from(id);
                }
                if let Some(family) = family {
                    // Logging out with one token of a login ends the whole login.
                    let family_until = rules::family_horizon(&snapshot.profiles, profile, now_secs);
                    self.store.revoke_family(family, family_until).await?;
                    answer.family_id = family.to_owned();
                    until = until.max(family_until);
                }
                until
            }
            Some(Target::TokenId(id)) => {
                if id.is_empty() {
                    return Err(LifecycleError::Empty("token_id").into());
                }
                let until = rules::profile_horizon(profile, now_secs);
                self.store.revoke_token(profile.name(), &id, until).await?;
                answer.token_id = id;
                until
            }
            Some(Target::Subject(subject)) => {
                if subject.is_empty() {
                    return Err(LifecycleError::Empty("subject").into());
                }
                let until = rules::profile_horizon(profile, now_secs);
                self.store
                    .revoke_subject(profile.name(), &subject, now_secs, until)
                    .await?;
                answer.revoked_before = Some(timestamp(now_secs));
                until
            }
        };
        answer.remembered_until = Some(timestamp(remembered));
        Ok(answer)
    }
}

/// The refresh rule of `access` and the profile it names.
fn refresh_of<'s>(
    snapshot: &'s Snapshot,
    access: &'s Profile,
) -> Result<(&'s RefreshRule, &'s Profile), LifecycleError> {
    let Some(rule) = &access.lifecycle().refresh else {
        return Err(LifecycleError::NoRefresh(name_of(access)));
    };
    let refresh = snapshot
        .profiles
        .get(rule.profile.as_str())
        .ok_or_else(|| LifecycleError::RefreshProfileGone(name_of(access)))?;
    Ok((rule, refresh))
}

fn name_of(profile: &Profile) -> crate::core::profile::ProfileName {
    profile.name.clone()
}

fn pair(access: Issued, refresh: Option<Issued>, family_id: String) -> proto::IssuePairResponse {
    proto::IssuePairResponse {
        access: Some(issued_to_proto(access)),
        refresh: refresh.map(issued_to_proto),
        family_id,
    }
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn timestamp(secs: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// Keeps the store's health entry true (every second for Redis, which may come and go) and
/// sweeps the embedded store; flips health to NOT_SERVING when `stop` completes.
pub async fn upkeep(store: Arc<Store>, health: HealthReporter, stop: impl Future<Output = ()>) {
    if matches!(*store, Store::Off) {
        return;
    }
    let work = async {
        let mut health_tick = tokio::time::interval(HEALTH_EVERY);
        let mut sweep_tick = tokio::time::interval(SWEEP_EVERY);
        let mut serving = None;
        loop {
            tokio::select! {
                _ = health_tick.tick() => {
                    let now = store.ping().await.is_ok();
                    if serving != Some(now) {
                        let status = if now { ServingStatus::Serving } else { ServingStatus::NotServing };
                        health.set_service_status(HEALTH_NAME, status).await;
                        tracing::info!(backend = store.backend(), serving = now, "token store health changed");
                        serving = Some(now);
                    }
                }
                _ = sweep_tick.tick() => {
                    match store.sweep().await {
                        Ok(0) => {}
                        Ok(swept) => tracing::debug!(swept, "expired token store entries deleted"),
                        Err(e) => tracing::warn!(error = %e, "sweeping the token store failed"),
                    }
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
    health
        .set_service_status(HEALTH_NAME, ServingStatus::NotServing)
        .await;
}
