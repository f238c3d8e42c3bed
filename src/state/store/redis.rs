//! The Redis store, shared by every replica: `redis` with a `ConnectionManager`, which
//! reconnects on its own after Redis restarts or the network drops.
//!
//! Every step is one command or one Lua script, which Redis runs alone: consuming a
//! single-use token is `SET NX EX`, and spending a refresh token (decide, then record the spend
//! or revoke the family) is one script. Nothing reads a value and writes it back in a second
//! round trip. Keys expire with Redis's own `EX`, counted from the service's clock.
//!
//! Short connection and response timeouts keep a call from hanging on an unreachable Redis:
//! it fails closed with `UNAVAILABLE` instead.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands as _, Client, IntoConnectionInfo as _, Script, Value};

use super::{Spend, Spent, StoreError, family_key, key};
use crate::core::clock::Clock;
use crate::core::lifecycle::{Facts, Lookup};

/// Every key this service writes starts with this, so a shared Redis stays readable.
const PREFIX: &str = "token-authority:";

/// How long a call waits for Redis to connect or answer before failing closed.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Writes a revocation, keeping the longer of the old and new expiry.
/// KEYS[1] the entry; ARGV[1] seconds to keep it.
const REVOKE: &str = r"
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
end
return 1
";

/// A subject's revoked-before time: the later of the old and new, kept the longer of both.
/// KEYS[1] the entry; ARGV[1] the time, ARGV[2] seconds to keep it.
const REVOKE_SUBJECT: &str = r"
local old = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local before = math.max(old, tonumber(ARGV[1]))
local ex = math.max(redis.call('TTL', KEYS[1]), tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%d', before), 'EX', ex)
return 1
";

/// Spends a refresh token: the rule of `core::lifecycle::decide_spend`, run inside Redis so
/// the decision and its writes are one step. KEYS: spent, answer, family. ARGV: now, grace,
/// answer, seconds to keep the spend, seconds to keep the answer (0: not kept), seconds to
/// keep a revoked family. Returns {0} first spend, {1, answer} replay, {2} reuse.
const SPEND: &str = r"
local now = tonumber(ARGV[1])
local spent = redis.call('GET', KEYS[1])
if not spent then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
  if tonumber(ARGV[5]) > 0 then
    redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[5])
  end
  return {0}
end
local answer = redis.call('GET', KEYS[2])
if answer and now < tonumber(spent) + tonumber(ARGV[2]) then
  return {1, answer}
end
if redis.call('TTL', KEYS[3]) < tonumber(ARGV[6]) then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[6])
end
return {2}
";

/// The Redis-backed store.
pub struct RedisStore {
    conn: ConnectionManager,
    revoke: Script,
    revoke_subject: Script,
    spend: Script,
    clock: Arc<dyn Clock>,
}

/// Refuses URLs the client cannot parse, and TLS (`rediss://`), which this build lacks.
pub(super) fn check_url(url: &str) -> anyhow::Result<()> {
    if url.starts_with("rediss://") {
        anyhow::bail!(
            "rediss:// (TLS) is not supported by this build; use redis:// on a private network"
        );
    }
    url.into_connection_info()
        .map_err(|e| anyhow::anyhow!("{e} (write it as redis://HOST:PORT/DB)"))?;
    Ok(())
}

impl RedisStore {
    /// A store on `url` that connects on first use, so the service starts while Redis is down.
    pub fn open(url: &str, clock: Arc<dyn Clock>) -> anyhow::Result<RedisStore> {
        check_url(url)?;
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RedisStore {
            conn,
            revoke: Script::new(REVOKE),
            revoke_subject: Script::new(REVOKE_SUBJECT),
            spend: Script::new(SPEND),
            clock,
        })
    }

    pub(super) async fn facts(
        &self,
        profile: &str,
        lookup: Lookup<'_>,
    ) -> Result<Facts, StoreError> {
        let mut keys = vec![prefixed(&key("s", profile, lookup.subject))];
        if let Some(id) = lookup.token_id {
            keys.push(prefixed(&key("t", profile, id)));
        }
        if let Some(family) = lookup.family {
            keys.push(prefixed(&family_key(family)));
        }
        let values: Vec<Option<String>> =
            self.conn.clone().mget(&keys).await.map_err(unavailable)?;
        let mut values = values.into_iter();
        let subject = values.next().flatten();
        let token = lookup.token_id.and_then(|_| values.next().flatten());
        let family = lookup.family.and_then(|_| values.next().flatten());
        Ok(Facts {
            token_revoked: token.is_some(),
            // A value this service did not write counts as "everything up to now".
            subject_revoked_before: subject.map(|v| v.parse().unwrap_or(u64::MAX)),
            family_revoked: family.is_some(),
        })
    }

    pub(super) async fn consume(
        &self,
        profile: &str,
        token_id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        let now = self.clock.unix_seconds();
        let set: Option<String> = ::redis::cmd("SET")
            .arg(prefixed(&key("u", profile, token_id)))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(seconds(until, now))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    pub(super) async fn revoke(&self, k: String, until: u64) -> Result<(), StoreError> {
        let now = self.clock.unix_seconds();
        let _: i64 = self
            .revoke
            .key(prefixed(&k))
            .arg(seconds(until, now))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn revoke_subject(
        &self,
        k: String,
        before: u64,
        until: u64,
    ) -> Result<(), StoreError> {
        let now = self.clock.unix_seconds();
        let _: i64 = self
            .revoke_subject
            .key(prefixed(&k))
            .arg(before)
            .arg(seconds(until, now))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn spend(&self, spend: Spend<'_>) -> Result<Spent, StoreError> {
        let now = spend.now;
        let answer_secs = if spend.grace > 0 { spend.grace + 1 } else { 0 };
        let reply: Vec<Value> = self
            .spend
            .key(prefixed(&key("x", spend.profile, spend.token_id)))
            .key(prefixed(&key("a", spend.profile, spend.token_id)))
            .key(prefixed(&family_key(spend.family)))
            .arg(now)
            .arg(spend.grace)
            .arg(spend.answer.as_slice())
            .arg(seconds(spend.spent_until, now))
            .arg(answer_secs)
            .arg(seconds(spend.family_until, now))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(Spent::First),
            [Value::Int(1), Value::BulkString(answer)] => Ok(Spent::Replay(answer.clone())),
            [Value::Int(2)] => Ok(Spent::Reused),
            other => Err(unavailable(format!(
                "unexpected reply to the spend script: {other:?}"
            ))),
        }
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let _: String = ::redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn prefixed(k: &str) -> String {
    format!("{PREFIX}{k}")
}

/// Seconds from `now` to `until`, at least 1 (Redis refuses `EX 0`) and one more than the
/// difference, so a key lives through the whole second it must be kept.
fn seconds(until: u64, now: u64) -> u64 {
    until.saturating_sub(now).saturating_add(1)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    tracing::warn!(error = %e, "the Redis token store did not answer");
    StoreError::Unavailable {
        backend: "redis",
        cause: e.to_string(),
    }
}
