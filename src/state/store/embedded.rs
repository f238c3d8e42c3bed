//! The embedded store: one redb file under the data directory, owned by this process.
//!
//! redb serialises write transactions, so a read-decide-write inside one transaction (consume
//! once, spend a refresh token) is atomic within the process; and a commit returns only after
//! the file is synced (`Durability::Immediate`, redb's default), so an answer given after a
//! commit survives `kill -9`. Reads (every Verify of a revocable profile) take a read
//! transaction and never wait for a writer.
//!
//! Each entry holds the time (Unix seconds) until which it must be kept; an index ordered by
//! that time lets [`Embedded::sweep`] delete expired entries without scanning the rest, and an
//! entry past its time counts as absent even before the sweep.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use redb::{Database, ReadableDatabase as _, ReadableTable, Table, TableDefinition};

use super::{Spend, Spent, StoreError, family_key, key};
use crate::core::clock::Clock;
use crate::core::lifecycle::{Facts, Lookup, SpendDecision, decide_spend};

/// Key → (keep until, payload).
const ENTRIES: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("entries");
/// (keep until, key) → (): the sweep's index.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");

/// The most entries one sweep transaction deletes, so a sweep never holds the writer long.
const SWEEP_BATCH: usize = 10_000;

/// The redb-backed store; cheap to share (the database is behind an `Arc`).
pub struct Embedded {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
}

impl Embedded {
    /// Opens (or creates) the store file; a file another process holds is refused.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Embedded> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
        let db = Database::create(path)
            .with_context(|| format!("opening the token store {}", path.display()))?;
        let txn = db.begin_write().context("opening the token store")?;
        {
            txn.open_table(ENTRIES).context("opening the token store")?;
            txn.open_table(EXPIRY).context("opening the token store")?;
        }
        txn.commit().context("opening the token store")?;
        Ok(Embedded {
            db: Arc::new(db),
            clock,
        })
    }

    fn now(&self) -> u64 {
        self.clock.unix_seconds()
    }

    /// Reads the entries of one token; a read transaction, so it never waits for writers.
    pub(super) fn facts(&self, profile: &str, lookup: Lookup<'_>) -> Result<Facts, StoreError> {
        let now = self.now();
        let read = || -> Result<Facts, redb::Error> {
            let txn = self.db.begin_read()?;
            let entries = txn.open_table(ENTRIES)?;
            let live = |k: &str| -> Result<Option<u64>, redb::Error> {
                Ok(live_entry(&entries, k, now)?.map(|(_, payload)| number(&payload)))
            };
            Ok(Facts {
                token_revoked: match lookup.token_id {
                    Some(id) => live(&key("t", profile, id))?.is_some(),
                    None => false,
                },
                subject_revoked_before: live(&key("s", profile, lookup.subject))?,
                family_revoked: match lookup.family {
                    Some(family) => live(&family_key(family))?.is_some(),
                    None => false,
                },
            })
        };
        read().map_err(failed)
    }

    /// Marks `token_id` consumed unless a live mark exists; `true` for the first caller.
    pub(super) async fn consume(
        &self,
        profile: &str,
        token_id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        let k = key("u", profile, token_id);
        self.write(move |entries, expiry, now| {
            if live_entry(entries, &k, now)?.is_some() {
                return Ok(false);
            }
            put(entries, expiry, &k, until, &[])?;
            Ok(true)
        })
        .await
    }

    /// Writes a revocation, keeping the later of the old and new times (`before` for a
    /// subject, the keep-until for both).
    pub(super) async fn revoke(
        &self,
        k: String,
        before: Option<u64>,
        until: u64,
    ) -> Result<(), StoreError> {
        self.write(move |entries, expiry, now| {
            let old = live_entry(entries, &k, now)?;
            let until = old.as_ref().map_or(until, |(u, _)| until.max(*u));
            let before = match (before, &old) {
                (Some(b), Some((_, payload))) => Some(b.max(number(payload))),
                (b, _) => b,
            };
            let payload = before.map(u64::to_be_bytes);
            put(
                entries,
                expiry,
                &k,
                until,
                payload.as_ref().map_or(&[][..], |p| &p[..]),
            )
        })
        .await
    }

    /// Spends a refresh token in one write transaction: the decision and its writes (the
    /// spend and answer, or the family's revocation) commit together or not at all.
    pub(super) async fn spend(&self, spend: Spend<'_>) -> Result<Spent, StoreError> {
        let spent_key = key("x", spend.profile, spend.token_id);
        let answer_key = key("a", spend.profile, spend.token_id);
        let family = family_key(spend.family);
        let Spend {
            now,
            grace,
            answer,
            spent_until,
            family_until,
            ..
        } = spend;
        self.write(move |entries, expiry, _| {
            let spent_at = live_entry(entries, &spent_key, now)?.map(|(_, p)| number(&p));
            let kept = live_entry(entries, &answer_key, now)?.map(|(_, p)| p);
            match decide_spend(spent_at, kept.is_some(), now, grace) {
                SpendDecision::Record => {
                    put(entries, expiry, &spent_key, spent_until, &now.to_be_bytes())?;
                    if grace > 0 {
                        put(entries, expiry, &answer_key, now + grace, &answer)?;
                    }
                    Ok(Spent::First)
                }
                SpendDecision::Replay => Ok(Spent::Replay(kept.unwrap_or_default())),
                SpendDecision::Reused => {
                    let old = live_entry(entries, &family, now)?.map_or(0, |(u, _)| u);
                    put(entries, expiry, &family, family_until.max(old), &[])?;
                    Ok(Spent::Reused)
                }
            }
        })
        .await
    }

    /// Deletes every entry kept until before now, in batches; returns how many went.
    pub(super) async fn sweep(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let swept = self
                .write(|entries, expiry, now| {
                    let stale: Vec<(u64, String)> = expiry
                        .range::<(u64, &str)>(..(now, ""))?
                        .take(SWEEP_BATCH)
                        .map(|row| {
                            row.map(|(k, _)| {
                                let (until, key) = k.value();
                                (until, key.to_owned())
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    for (until, k) in &stale {
                        expiry.remove((*until, k.as_str()))?;
                        // An entry rewritten with a later time has a newer index row.
                        let current = entries.get(k.as_str())?.map(|g| g.value().0);
                        if current == Some(*until) {
                            entries.remove(k.as_str())?;
                        }
                    }
                    Ok(stale.len())
                })
                .await?;
            total += swept;
            if swept < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    /// Runs `step` in one write transaction on a blocking thread (a commit syncs the file)
    /// and commits it; `step` gets the tables and the time.
    async fn write<T, F>(&self, step: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(
                &mut Table<&str, (u64, &[u8])>,
                &mut Table<(u64, &str), ()>,
                u64,
            ) -> Result<T, redb::Error>
            + Send
            + 'static,
    {
        let db = self.db.clone();
        let now = self.now();
        let run = move || -> Result<T, redb::Error> {
            let txn = db.begin_write()?;
            let answer = {
                let mut entries = txn.open_table(ENTRIES)?;
                let mut expiry = txn.open_table(EXPIRY)?;
                step(&mut entries, &mut expiry, now)?
            };
            txn.commit()?;
            Ok(answer)
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(result) => result.map_err(failed),
            Err(e) => Err(failed(e)),
        }
    }
}

/// The entry at `k` if it is still to be kept at `now`: (keep until, payload).
fn live_entry(
    entries: &impl ReadableTable<&'static str, (u64, &'static [u8])>,
    k: &str,
    now: u64,
) -> Result<Option<(u64, Vec<u8>)>, redb::Error> {
    Ok(entries.get(k)?.and_then(|guard| {
        let (until, payload) = guard.value();
        (until >= now).then(|| (until, payload.to_vec()))
    }))
}

/// Writes `k`, moving its index row when its keep-until time changes.
fn put(
    entries: &mut Table<&str, (u64, &[u8])>,
    expiry: &mut Table<(u64, &str), ()>,
    k: &str,
    until: u64,
    payload: &[u8],
) -> Result<(), redb::Error> {
    let old = entries.insert(k, (until, payload))?.map(|g| g.value().0);
    if let Some(old) = old
        && old != until
    {
        expiry.remove((old, k))?;
    }
    expiry.insert((until, k), ())?;
    Ok(())
}

/// A payload written as a big-endian u64; 0 for anything else.
fn number(payload: &[u8]) -> u64 {
    payload
        .try_into()
        .map(u64::from_be_bytes)
        .unwrap_or_default()
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    tracing::error!(error = %e, "the embedded token store failed");
    StoreError::Unavailable {
        backend: "embedded",
        cause: e.to_string(),
    }
}
