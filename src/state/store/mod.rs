//! The token store: revocations, single-use marks and spent refresh tokens, on an embedded
//! file ([`embedded`], redb) or a shared Redis ([`redis`]).
//!
//! Every operation is one atomic step in the backend (one redb write transaction, one Redis
//! command or Lua script), so no decision is ever made on a value another replica may change
//! before it is written. The rules (what facts mean, how long to keep them, the reuse grace)
//! come from [`crate::core::lifecycle`]; this module only keeps facts and forgets them once
//! every token they guard has expired.
//!
//! Keys are `KIND/PROFILE/ID` (profile names never contain `/`): `t` a revoked token id, `s` a
//! subject's revoked-before time, `f` a revoked family, `u` a consumed single-use token, `x` a
//! spent refresh token and `a` the answer its first spend gave.

pub mod embedded;
pub mod redis;

use std::sync::Arc;

use crate::core::clock::Clock;
use crate::core::lifecycle::{Facts, Lookup};
use crate::state::config::StoreSettings;

/// How the store is reached; [`Store::Off`] when no profile needed one at start-up.
///
/// An enum rather than a trait object: there are two backends, both known here, and async
/// methods on a `dyn` trait would need boxed futures on every Verify.
pub enum Store {
    /// No store was opened; every call that needs one is refused.
    Off,
    Embedded(embedded::Embedded),
    Redis(redis::RedisStore),
}

/// Why the store could not answer. Calls that need it fail closed: nothing is ever answered
/// "valid" without it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no token store is open: no profile needed one at start-up; restart the service to open it"
    )]
    Off,
    #[error(
        "the token store ({backend}) is unavailable, so calls that need it are refused until it answers again"
    )]
    Unavailable {
        backend: &'static str,
        /// What the backend said; logged, never sent.
        cause: String,
    },
}

/// One Refresh spending a refresh token, with the answer it would give.
#[derive(Clone, Debug)]
pub struct Spend<'a> {
    pub profile: &'a str,
    pub token_id: &'a str,
    pub family: &'a str,
    pub now: u64,
    /// reuse_grace, in seconds.
    pub grace: u64,
    /// The encoded answer, kept for the grace so a lost answer can be given again.
    pub answer: Vec<u8>,
    /// Until when the spend is remembered: the refresh token's exp plus leeway.
    pub spent_until: u64,
    /// Until when a reuse-revoked family is remembered.
    pub family_until: u64,
}

/// What spending a refresh token found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spent {
    /// The first spend: the caller's answer is now the one on record.
    First,
    /// Spent within the grace: the first answer, to give again.
    Replay(Vec<u8>),
    /// Spent before the grace: the family is now revoked.
    Reused,
}

/// The health service name that reports whether the store answers.
pub const HEALTH_NAME: &str = "tokenauthority.v1.Store";

impl Store {
    /// Opens the configured store: the embedded file at once (refusing a locked or broken
    /// one), Redis lazily (the service starts while Redis is down, and reconnects on its own).
    pub fn open(settings: Option<&StoreSettings>, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
        Ok(match settings {
            None => Store::Off,
            Some(StoreSettings::Embedded { path }) => {
                Store::Embedded(embedded::Embedded::open(path, clock)?)
            }
            Some(StoreSettings::Redis { url }) => {
                Store::Redis(redis::RedisStore::open(url, clock)?)
            }
        })
    }

    /// Which backend this is, for logs and health.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Off => "off",
            Store::Embedded(_) => "embedded",
            Store::Redis(_) => "redis",
        }
    }

    /// What the store knows about one token of `profile`.
    pub async fn facts(&self, profile: &str, lookup: Lookup<'_>) -> Result<Facts, StoreError> {
        match self {
            Store::Off => Err(StoreError::Off),
            Store::Embedded(s) => s.facts(profile, lookup),
            Store::Redis(s) => s.facts(profile, lookup).await,
        }
    }

    /// Marks a single-use token consumed; `true` for exactly one caller, across replicas.
    pub async fn consume(
        &self,
        profile: &str,
        token_id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Off => Err(StoreError::Off),
            Store::Embedded(s) => s.consume(profile, token_id, until).await,
            Store::Redis(s) => s.consume(profile, token_id, until).await,
        }
    }

    /// Revokes one token id of `profile` until `until`. Idempotent.
    pub async fn revoke_token(
        &self,
        profile: &str,
        token_id: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Off => Err(StoreError::Off),
            Store::Embedded(s) => s.revoke(key("t", profile, token_id), None, until).await,
            Store::Redis(s) => s.revoke(key("t", profile, token_id), until).await,
        }
    }

    /// Revokes every token of `subject` under `profile` issued at or before `before`; an
    /// earlier revocation's later time, or longer memory, is kept.
    pub async fn revoke_subject(
        &self,
        profile: &str,
        subject: &str,
        before: u64,
        until: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Off => Err(StoreError::Off),
            Store::Embedded(s) => {
                s.revoke(key("s", profile, subject), Some(before), until)
                    .await
            }
            Store::Redis(s) => {
                s.revoke_subject(key("s", profile, subject), before, until)
                    .await
            }
        }
    }

    /// Revokes a family (every access and refresh token of one login). Idempotent.
    pub async fn revoke_family(&self, family: &str, until: u64) -> Result<(), StoreError> {
        match self {
            Store::Off => Err(StoreError::Off),
            Store::Embedded(s) => s.revoke(family_key(family), None, until).await,
            Store::Redis(s) => s.revoke(family_key(family), until).await,
        }
    }

    /// Spends a refresh token, atomically deciding first spend, replay or reuse (which
    /// revokes the family in the same step).
    pub async fn spend(&self, spend: Spend<'_>) -> Result<Spent, StoreError> {
        match self {
            Store::Off => Err(StoreError::Off),
            Store::Embedded(s) => s.spend(spend).await,
            Store::Redis(s) => s.spend(spend).await,
        }
    }

    /// Whether the store answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Off => Err(StoreError::Off),
            Store::Embedded(_) => Ok(()),
            Store::Redis(s) => s.ping().await,
        }
    }

    /// Deletes entries that guard only expired tokens; Redis expires its keys itself.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(s) => s.sweep().await,
            Store::Off | Store::Redis(_) => Ok(0),
        }
    }
}

/// Refuses a Redis URL the client cannot use, at start-up rather than at the first call.
pub fn check_redis_url(url: &str) -> anyhow::Result<()> {
    redis::check_url(url)
}

fn key(kind: &str, profile: &str, id: &str) -> String {
    format!("{kind}/{profile}/{id}")
}

fn family_key(family: &str) -> String {
    format!("f//{family}")
}
