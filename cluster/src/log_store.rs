//! The Raft log and vote on redb, one file per node.
//!
//! Durability rules (openraft's contract, and why each commit uses the durability it does):
//! - `append` commits with `Durability::Immediate` (one fdatasync) before it fires the flush
//!   callback, so an entry is never acknowledged to the leader before it is on disk.
//! - `save_vote` commits immediately before it returns: a lost vote allows a double vote.
//! - `truncate` commits immediately: the next append must never see the entries it replaces.
//! - `purge` and `save_committed` may be lost in a crash without harm (the entries reappear,
//!   the committed index is re-learned), so they ride along with the next durable commit: a
//!   purge commits without syncing, and the committed index is only remembered until the next
//!   append writes it in the same transaction as its entries.
//!
//! redb commits are atomic, so a crash leaves either the whole append or none of it: no hole.
//! Every redb call runs on tokio's blocking pool, never on an async worker thread.
//!
//! The entries most recently appended are also kept in memory (the [`Tail`], bounded), exactly
//! as the log holds them: the leader applies and replicates an entry right after appending it,
//! and those reads are served without a trip to the blocking pool and a decode.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::codec;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// Entries kept in memory at most, by count and by encoded size.
const TAIL_ENTRIES: usize = 1024;
const TAIL_BYTES: usize = 16 * 1024 * 1024;

/// The most recent entries of the log, in order, as the log holds them: always a contiguous
/// suffix of it (appends push, truncation pops from the back, a purge or the bounds pop from the
/// front).
#[derive(Default)]
struct Tail {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Tail {
    fn push(&mut self, entry: Entry, size: usize) {
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > TAIL_ENTRIES || (self.bytes > TAIL_BYTES && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    /// Forgets entries from `index` on (a truncation).
    fn truncate(&mut self, index: u64) {
        while let Some((entry, size)) = self.entries.back() {
            if entry.log_id.index < index {
                break;
            }
            self.bytes -= size;
            self.entries.pop_back();
        }
    }

    /// Forgets entries up to and including `index` (a purge).
    fn purge(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(entry, _)| entry.log_id.index <= index) {
            self.pop_front();
        }
    }

    /// The entries in `[start, end)` if the tail holds all of them (`end: None`: to the end
    /// of the log).
    fn range(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        let last = self.entries.back()?.0.log_id.index;
        let end = end.unwrap_or(last + 1);
        if start < first || end > last + 1 {
            return None;
        }
        let skip = (start - first) as usize;
        Some(self.entries.iter().skip(skip).take(end.saturating_sub(start) as usize).map(|(e, _)| e.clone()).collect())
    }
}

/// redb-backed `RaftLogStorage`. Cloning shares the database (the log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    tail: Arc<parking_lot::Mutex<Tail>>,
    /// The last committed index openraft reported, for the operator view and for the next
    /// append to persist (`pending` until it does).
    committed: Arc<parking_lot::Mutex<Committed>>,
}

#[derive(Default)]
struct Committed {
    latest: Option<LogId>,
    pending: bool,
}

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

fn logs_err(verb: ErrorVerb) -> impl Fn(String) -> StorageError {
    move |e| io_err(ErrorSubject::Logs, verb, e)
}

impl LogStore {
    /// Opens (or creates) the log file. Fails if another process holds it.
    pub fn open(path: &Path) -> Result<LogStore, redb::Error> {
        let db = Database::builder().set_cache_size(32 * 1024 * 1024).create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(LOG)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(LogStore { db: Arc::new(db), tail: Arc::default(), committed: Arc::default() })
    }

    /// Runs `f` on the blocking pool; redb calls may fsync or wait for pages.
    async fn blocking<T, F>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, String> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| format!("log store task: {e}"))?
    }

    fn read_meta<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, String> {
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(META).map_err(|e| e.to_string())?;
        match table.get(key).map_err(|e| e.to_string())? {
            Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(
        db: &Database,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), String> {
        let bytes = codec::encode(value).map_err(|e| e.to_string())?;
        let mut txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(durability).map_err(|e| e.to_string())?;
        {
            let mut table = txn.open_table(META).map_err(|e| e.to_string())?;
            table.insert(key, bytes.as_slice()).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())
    }

    /// True when this log has never been written: no vote, no entry, nothing purged.
    pub async fn is_pristine(&self) -> Result<bool, StorageError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
            let meta = txn.open_table(META).map_err(|e| e.to_string())?;
            Ok(log.is_empty().map_err(|e| e.to_string())? && meta.is_empty().map_err(|e| e.to_string())?)
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    /// Marks everything up to `log_id` as purged. Used when a node starts from the durable
    /// store's snapshot: its log then begins right after the restored state.
    pub async fn start_after(&self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| Self::write_meta(db, LAST_PURGED, &log_id, Durability::Immediate))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    pub fn committed_index(&self) -> Option<u64> {
        self.committed.lock().latest.map(|l| l.index)
    }

    /// Index of the first and last entries held, for the operator view.
    pub async fn bounds(&self) -> Result<(Option<u64>, Option<u64>), StorageError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
            let first = log.first().map_err(|e| e.to_string())?.map(|(k, _)| k.value());
            let last = log.last().map_err(|e| e.to_string())?.map(|(k, _)| k.value());
            Ok((first, last))
        })
        .await
        .map_err(logs_err(ErrorVerb::Read))
    }
}

fn owned_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

/// `[start, end)` of a range of indexes (`end: None`: unbounded).
fn half_open((start, end): (Bound<u64>, Bound<u64>)) -> (u64, Option<u64>) {
    let start = match start {
        Bound::Included(i) => i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match end {
        Bound::Included(i) => Some(i.saturating_add(1)),
        Bound::Excluded(i) => Some(i),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = owned_bounds(&range);
        let (start, end) = half_open(bounds);
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.tail.lock().range(start, end) {
            return Ok(entries);
        }
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
            let mut entries = Vec::new();
            for item in log.range::<u64>(bounds).map_err(|e| e.to_string())? {
                let (_, bytes) = item.map_err(|e| e.to_string())?;
                entries.push(codec::decode::<Entry>(bytes.value()).map_err(|e| e.to_string())?);
            }
            Ok(entries)
        })
        .await
        .map_err(logs_err(ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|db| {
            let last_purged: Option<LogId> = Self::read_meta(db, LAST_PURGED)?;
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
            let last = match log.last().map_err(|e| e.to_string())? {
                Some((_, bytes)) => Some(codec::decode::<Entry>(bytes.value()).map_err(|e| e.to_string())?.log_id),
                None => last_purged,
            };
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
        })
        .await
        .map_err(logs_err(ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db| Self::write_meta(db, VOTE, &vote, Durability::Immediate))
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|db| Self::read_meta(db, VOTE)).await.map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    /// Remembered; the next append persists it with its entries (losing it is harmless: the
    /// committed index is learned again from the leader).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self.committed.lock() = Committed { latest: committed, pending: true };
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self
            .blocking(|db| Ok(Self::read_meta::<Option<LogId>>(db, COMMITTED)?.flatten()))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        *self.committed.lock() = Committed { latest: committed, pending: false };
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| codec::encode(e).map(|bytes| (e.log_id.index, bytes)))
            .collect::<Result<_, _>>()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let sizes: Vec<usize> = encoded.iter().map(|(_, bytes)| bytes.len()).collect();
        let committed = {
            let mut committed = self.committed.lock();
            std::mem::take(&mut committed.pending).then_some(committed.latest)
        };
        let committed = committed
            .map(|c| codec::encode(&c))
            .transpose()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let result = self
            .blocking(move |db| {
                let mut txn = db.begin_write().map_err(|e| e.to_string())?;
                txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
                {
                    let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
                    for (index, bytes) in &encoded {
                        log.insert(*index, bytes.as_slice()).map_err(|e| e.to_string())?;
                    }
                    if let Some(committed) = &committed {
                        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
                        meta.insert(COMMITTED, committed.as_slice()).map_err(|e| e.to_string())?;
                    }
                }
                txn.commit().map_err(|e| e.to_string())
            })
            .await;
        match result {
            Ok(()) => {
                let mut tail = self.tail.lock();
                for (entry, size) in entries.into_iter().zip(sizes) {
                    tail.push(entry, size);
                }
                drop(tail);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.tail.lock().truncate(log_id.index);
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
            {
                let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
                log.retain_in(log_id.index.., |_, _| false).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(logs_err(ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let bytes = codec::encode(&log_id).map_err(|e| e.to_string())?;
            let mut txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(Durability::None).map_err(|e| e.to_string())?;
            {
                let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
                meta.insert(LAST_PURGED, bytes.as_slice()).map_err(|e| e.to_string())?;
                let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
                log.retain_in(..=log_id.index, |_, _| false).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(logs_err(ErrorVerb::Delete))?;
        self.tail.lock().purge(log_id.index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};
    use proptest::prelude::*;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
    }

    proptest! {
        /// Whatever the appends, truncations and purges, a range the tail answers is exactly
        /// what the log holds.
        #[test]
        fn the_tail_answers_only_what_the_log_holds(
            steps in prop::collection::vec((0u8..4, 0u64..40, 1usize..6), 1..120)
        ) {
            let mut tail = Tail::default();
            let mut log: std::collections::BTreeMap<u64, u64> = Default::default();
            let mut term = 1;
            for (action, at, n) in steps {
                let next = log.keys().next_back().map_or(1, |last| last + 1);
                match action {
                    0 | 1 => for i in 0..n as u64 {
                        log.insert(next + i, term);
                        tail.push(entry(next + i, term), 100);
                    },
                    2 => {
                        term += 1;
                        log.retain(|index, _| *index < at);
                        tail.truncate(at);
                    }
                    _ => {
                        log.retain(|index, _| *index > at);
                        tail.purge(at);
                    }
                }
                let (start, end) = (at, at + n as u64);
                if let Some(entries) = tail.range(start, Some(end)) {
                    let expected: Vec<(u64, u64)> = log.range(start..end).map(|(i, t)| (*i, *t)).collect();
                    let got: Vec<(u64, u64)> = entries.iter().map(|e| (e.log_id.index, e.log_id.leader_id.term)).collect();
                    prop_assert_eq!(got, expected);
                }
            }
        }
    }

    #[test]
    fn the_tail_is_bounded() {
        let mut tail = Tail::default();
        for index in 1..=(TAIL_ENTRIES as u64 + 10) {
            tail.push(entry(index, 1), 10);
        }
        assert_eq!(tail.entries.len(), TAIL_ENTRIES);
        assert_eq!(tail.range(1, Some(5)), None, "evicted entries are read from disk");
        tail.push(entry(TAIL_ENTRIES as u64 + 11, 1), TAIL_BYTES);
        assert_eq!(tail.entries.len(), 1, "an oversized entry pushes out everything before it");
    }
}
