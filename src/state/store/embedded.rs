//! The embedded store: one redb file under the data directory, owned by this process.
//!
//! One writer thread owns the database and runs every write step in order, so a
//! read-decide-write step (consume once, spend a refresh token) is atomic within the process;
//! steps queued while a commit syncs share the next transaction (group commit), and a caller is
//! answered only after the commit that holds its step returns, synced
//! (`Durability::Immediate`, redb's default), so an acknowledged write survives `kill -9`. Reads (every Verify of a revocable profile) take a read
//! transaction and never wait for a writer.
//!
//! Each entry holds the time (Unix seconds) until which it must be kept; an index ordered by
//! that time lets [`Embedded::sweep`] delete expired entries without scanning the rest, and an
//! entry past its time counts as absent even before the sweep.
//!
//! Revocations (token ids, subjects, families) are also mirrored in memory, so a Verify of a
//! revocable profile reads a hash map instead of opening a read transaction. The mirror is
//! coherent because this process is the file's only writer (redb locks it): it is filled from
//! the file at open and updated after each commit, before the call that wrote is answered.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock, mpsc};

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

/// The redb-backed store: the database is owned by one writer thread, and reads come from
/// the mirror.
pub struct Embedded {
    writer: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    clock: Arc<dyn Clock>,
    /// Revocation entries (kinds `t`, `s`, `f`): key → (keep until, the number it holds).
    mirror: RwLock<HashMap<String, (u64, u64)>>,
}

/// Whether an entry is a revocation, which Verify reads (and so the mirror holds).
fn mirrored(k: &str) -> bool {
    k.starts_with("t/") || k.starts_with("s/") || k.starts_with("f/")
}

impl Embedded {
    /// Opens (or creates) the store file; a file another process holds is refused.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Embedded> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
        // Created readable only by the service, like its key files: it holds token ids,
        // subjects' revocation times and, within a refresh grace, live tokens. redb
        // initialises an empty file in place.
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating the token store {}", path.display()))?;
        }
        let db = Database::create(path)
            .with_context(|| format!("opening the token store {}", path.display()))?;
        let txn = db.begin_write().context("opening the token store")?;
        {
            txn.open_table(ENTRIES).context("opening the token store")?;
            txn.open_table(EXPIRY).context("opening the token store")?;
        }
        txn.commit().context("opening the token store")?;
        let now = clock.unix_seconds();
        let mut mirror = HashMap::new();
        let txn = db.begin_read().context("reading the token store")?;
        let entries = txn.open_table(ENTRIES).context("reading the token store")?;
        for row in entries.iter().context("reading the token store")? {
            let (k, v) = row.context("reading the token store")?;
            let (until, payload) = v.value();
            if mirrored(k.value()) && until >= now {
                mirror.insert(k.value().to_owned(), (until, number(payload)));
            }
        }
        drop(entries);
        drop(txn);
        let (writer, jobs) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("token-store".into())
            .spawn(move || run_writer(db, jobs))
            .context("starting the token store's writer thread")?;
        Ok(Embedded {
            writer: Some(writer),
            thread: Some(thread),
            clock,
            mirror: RwLock::new(mirror),
        })
    }

    /// Records a committed revocation in the mirror. Revocations only grow (a later time, a
    /// longer memory), so merging by maximum gives the file's value whatever order two
    /// writers' updates arrive in.
    fn mirror_put(&self, k: String, until: u64, number: u64) {
        let mut mirror = self.mirror.write().unwrap_or_else(|p| p.into_inner());
        let entry = mirror.entry(k).or_insert((until, number));
        *entry = (entry.0.max(until), entry.1.max(number));
    }

    fn now(&self) -> u64 {
        self.clock.unix_seconds()
    }

    /// Reads the revocations of one token from the mirror; never waits for a writer.
    pub(super) fn facts(&self, profile: &str, lookup: Lookup<'_>) -> Result<Facts, StoreError> {
        let now = self.now();
        let mirror = self.mirror.read().unwrap_or_else(|p| p.into_inner());
        let live = |k: String| {
            mirror
                .get(&k)
                .filter(|(until, _)| *until >= now)
                .map(|(_, n)| *n)
        };
        Ok(Facts {
            token_revoked: lookup
                .token_id
                .is_some_and(|id| live(key("t", profile, id)).is_some()),
            subject_revoked_before: live(key("s", profile, lookup.subject)),
            family_revoked: lookup
                .family
                .is_some_and(|family| live(family_key(family)).is_some()),
        })
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
        let written = k.clone();
        let (until, number) = self
            .write(move |entries, expiry, now| {
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
                )?;
                Ok((until, before.unwrap_or_default()))
            })
            .await?;
        self.mirror_put(written, until, number);
        Ok(())
    }

    /// Spends a refresh token in one write transaction: the decision and its writes (the
    /// spend and answer, or the family's revocation) commit together or not at all.
    pub(super) async fn spend(&self, spend: Spend<'_>) -> Result<Spent, StoreError> {
        let spent_key = key("x", spend.profile, spend.token_id);
        let answer_key = key("a", spend.profile, spend.token_id);
        let family = family_key(spend.family);
        let written = family.clone();
        let Spend {
            now,
            grace,
            answer,
            spent_until,
            family_until,
            ..
        } = spend;
        let (spent, family_until) = self
            .write(move |entries, expiry, _| {
                let spent_at = live_entry(entries, &spent_key, now)?.map(|(_, p)| number(&p));
                let kept = live_entry(entries, &answer_key, now)?.map(|(_, p)| p);
                match decide_spend(spent_at, kept.is_some(), now, grace) {
                    SpendDecision::Record => {
                        put(entries, expiry, &spent_key, spent_until, &now.to_be_bytes())?;
                        if grace > 0 {
                            put(entries, expiry, &answer_key, now + grace, &answer)?;
                        }
                        Ok((Spent::First, None))
                    }
                    SpendDecision::Replay => Ok((Spent::Replay(kept.unwrap_or_default()), None)),
                    SpendDecision::Reused => {
                        let old = live_entry(entries, &family, now)?.map_or(0, |(u, _)| u);
                        let until = family_until.max(old);
                        put(entries, expiry, &family, until, &[])?;
                        Ok((Spent::Reused, Some(until)))
                    }
                }
            })
            .await?;
        if let Some(until) = family_until {
            self.mirror_put(written, until, 0);
        }
        Ok(spent)
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
                    let mut removed = Vec::new();
                    for (until, k) in &stale {
                        expiry.remove((*until, k.as_str()))?;
                        // An entry rewritten with a later time has a newer index row.
                        let current = entries.get(k.as_str())?.map(|g| g.value().0);
                        if current == Some(*until) {
                            entries.remove(k.as_str())?;
                            removed.push(k.clone());
                        }
                    }
                    Ok((stale.len(), removed))
                })
                .await?;
            let (swept, removed) = swept;
            {
                // Only what is still expired: a revocation written since has a later time.
                let now = self.now();
                let mut mirror = self.mirror.write().unwrap_or_else(|p| p.into_inner());
                for k in removed {
                    if mirror.get(&k).is_some_and(|(until, _)| *until < now) {
                        mirror.remove(&k);
                    }
                }
            }
            total += swept;
            if swept < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    /// Runs `step` on the writer thread, inside the next write transaction, and answers once
    /// that transaction is committed (and so synced); `step` gets the tables and the time.
    async fn write<T, F>(&self, step: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Entries<'_>, &mut Expiry<'_>, u64) -> Result<T, redb::Error>
            + Send
            + 'static,
    {
        let now = self.now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |entries, expiry| {
            let value = step(entries, expiry, now)?;
            Ok(Box::new(move |committed: Result<(), String>| {
                let _ = tx.send(committed.map(|()| value));
            }))
        });
        let sent = match &self.writer {
            Some(writer) => writer.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(failed("the store's writer thread has stopped"));
        }
        match rx.await {
            Ok(result) => result.map_err(failed),
            // The step failed and its transaction was abandoned; the writer logged why.
            Err(_) => Err(failed("the write was not committed")),
        }
    }
}

type Entries<'t> = Table<'t, &'static str, (u64, &'static [u8])>;
type Expiry<'t> = Table<'t, (u64, &'static str), ()>;
/// What the caller is told once the transaction its step ran in is committed, or not.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One step, run inside a write transaction shared with the steps queued beside it.
type Job = Box<dyn FnOnce(&mut Entries<'_>, &mut Expiry<'_>) -> Result<Finish, redb::Error> + Send>;

/// The most steps one transaction takes.
const MAX_BATCH: usize = 1024;

/// The writer thread: takes every step queued while the last commit was syncing and runs them,
/// in order, in one transaction, so concurrent writers share one fsync (group commit). Each
/// step still sees the writes of the steps before it, so each is as atomic as if alone.
fn run_writer(db: Database, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let run = |batch: Vec<Job>| -> Result<Vec<Finish>, redb::Error> {
            let txn = db.begin_write()?;
            let finishes = {
                let mut entries = txn.open_table(ENTRIES)?;
                let mut expiry = txn.open_table(EXPIRY)?;
                batch
                    .into_iter()
                    .map(|job| job(&mut entries, &mut expiry))
                    .collect::<Result<Vec<_>, _>>()?
            };
            txn.commit()?;
            Ok(finishes)
        };
        match run(batch) {
            Ok(finishes) => finishes.into_iter().for_each(|finish| finish(Ok(()))),
            // Every step of the batch is dropped unanswered, so its caller fails closed.
            Err(e) => {
                tracing::error!(error = %e, "a token store transaction failed; its writes are abandoned");
            }
        }
    }
}

impl Drop for Embedded {
    /// Stops the writer after what is queued and waits for it, so the file is closed (and its
    /// lock released) when the store is gone.
    fn drop(&mut self) {
        self.writer = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
