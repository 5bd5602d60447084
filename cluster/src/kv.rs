//! The replicated map and its deterministic `apply`.
//!
//! `KvState` is a pure function of the log: `apply` reads no clock, no randomness, no
//! configuration, and iterates only `BTreeMap`s. Two replicas that applied the same entries
//! hold byte-identical snapshots (see `tests/determinism.rs`).
//!
//! ```text
//!   key ──► Slot { version, value }      value = None is a tombstone: the key was deleted at
//!                                        `version` and the durable store has not caught up yet
//! ```
//!
//! Tombstones exist so the durable store learns about deletes. The flusher writes every change
//! above the store's watermark, then proposes `Command::Compact { upto }`; applying it drops the
//! tombstones at or below `upto` and records the new watermark. So at all times every tombstone
//! is above the watermark.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;

use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::types::{
    Applied, Command, Compare, Entry, Expect, LogId, RawOp, RawTxn, SnapshotMeta, StoredMembership, TxnOutcome, Version,
};

/// One key's current state. Values are shared so snapshot copies are cheap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub version: Version,
    pub value: Option<Arc<[u8]>>,
}

/// The state machine's data. `dirty` is local bookkeeping, derived from the rest: it is neither
/// replicated nor part of a snapshot.
#[derive(Debug, Default)]
pub(crate) struct KvState {
    map: BTreeMap<String, Slot>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Every change at or below this index is in the durable store.
    watermark: Version,
    /// Keys whose slot is above `watermark`: what the next flush must write.
    dirty: BTreeSet<String>,
    live: usize,
}

/// A consistent, cheap copy of the replicated part of the state, taken under the read lock and
/// serialized without it.
pub(crate) struct Image {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub watermark: Version,
    map: BTreeMap<String, Slot>,
}

const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    format: u32,
    meta: SnapshotMeta,
    watermark: Version,
    records: u64,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    key: &'a str,
    version: Version,
    value: Option<&'a [u8]>,
}

#[derive(Deserialize)]
struct Record {
    key: String,
    version: Version,
    value: Option<Vec<u8>>,
}

/// A change the durable store does not hold yet.
#[derive(Clone, Debug)]
pub(crate) struct DirtyRow {
    pub key: String,
    pub version: Version,
    pub value: Option<Arc<[u8]>>,
}

impl KvState {
    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }

    pub fn membership(&self) -> &StoredMembership {
        &self.membership
    }

    pub fn watermark(&self) -> Version {
        self.watermark
    }

    pub fn live_keys(&self) -> usize {
        self.live
    }

    pub fn tombstones(&self) -> usize {
        self.map.len() - self.live
    }

    pub fn dirty_keys(&self) -> usize {
        self.dirty.len()
    }

    /// The live value of `key` and the version that wrote it.
    pub fn get(&self, key: &str) -> Option<(Version, Arc<[u8]>)> {
        let slot = self.map.get(key)?;
        slot.value.as_ref().map(|v| (slot.version, Arc::clone(v)))
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, Version, &'a Arc<[u8]>)> + 'a {
        self.map
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter_map(|(k, slot)| slot.value.as_ref().map(|v| (k.as_str(), slot.version, v)))
    }

    fn live_version(&self, key: &str) -> Option<Version> {
        self.map.get(key).filter(|s| s.value.is_some()).map(|s| s.version)
    }

    /// Applies one log entry. Deterministic: the result depends only on `self` and `entry`.
    pub fn apply(&mut self, entry: Entry) -> Applied {
        let log_id = entry.log_id;
        self.last_applied = Some(log_id);
        match entry.payload {
            EntryPayload::Blank => Applied::Blank,
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(log_id), m);
                Applied::Membership
            }
            EntryPayload::Normal(Command::Txns(txns)) => {
                Applied::Txns(txns.into_iter().map(|txn| self.apply_txn(txn, log_id.index)).collect())
            }
            EntryPayload::Normal(Command::Compact { upto }) => {
                self.compact(upto);
                Applied::Compacted
            }
        }
    }

    fn apply_txn(&mut self, txn: RawTxn, version: Version) -> TxnOutcome {
        for Compare { key, expect } in &txn.compares {
            let actual = self.live_version(key);
            let holds = match expect {
                Expect::Absent => actual.is_none(),
                Expect::Version(v) => actual == Some(*v),
            };
            if !holds {
                return TxnOutcome::Conflict {
                    key: key.clone(),
                    actual,
                };
            }
        }
        for op in txn.ops {
            match op {
                RawOp::Put { key, value } => {
                    let slot = Slot {
                        version,
                        value: Some(value.into()),
                    };
                    match self.map.insert(key.clone(), slot) {
                        Some(Slot { value: Some(_), .. }) => {}
                        Some(Slot { value: None, .. }) | None => self.live += 1,
                    }
                    self.dirty.insert(key);
                }
                RawOp::Delete { key } => {
                    // Deleting what is not live changes nothing: the store cannot hold it either.
                    if let Some(slot) = self.map.get_mut(&key).filter(|s| s.value.is_some()) {
                        *slot = Slot { version, value: None };
                        self.live -= 1;
                        self.dirty.insert(key);
                    }
                }
            }
        }
        TxnOutcome::Committed { version }
    }

    fn compact(&mut self, upto: Version) {
        if upto <= self.watermark {
            return;
        }
        self.watermark = upto;
        let map = &mut self.map;
        self.dirty.retain(|key| match map.get(key) {
            Some(slot) if slot.version > upto => true,
            Some(Slot { value: Some(_), .. }) => false,
            Some(Slot { value: None, .. }) => {
                map.remove(key);
                false
            }
            None => false,
        });
    }

    /// Changes above `above` that the durable store has not seen, oldest first.
    pub fn dirty_rows(&self, above: Version) -> Vec<DirtyRow> {
        let mut rows: Vec<DirtyRow> = self
            .dirty
            .iter()
            .filter_map(|key| {
                let slot = self.map.get(key)?;
                (slot.version > above).then(|| DirtyRow {
                    key: key.clone(),
                    version: slot.version,
                    value: slot.value.clone(),
                })
            })
            .collect();
        rows.sort_by(|a, b| (a.version, &a.key).cmp(&(b.version, &b.key)));
        rows
    }

    pub fn image(&self) -> Image {
        Image {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            watermark: self.watermark,
            map: self.map.clone(),
        }
    }

    /// A state built from the durable store's rows at `meta` (restore after total loss of local disks).
    pub fn from_rows(meta: &SnapshotMeta, rows: impl IntoIterator<Item = (String, Version, Vec<u8>)>) -> KvState {
        let mut state = KvState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            watermark: meta.last_log_id.map_or(0, |l| l.index),
            ..KvState::default()
        };
        for (key, version, value) in rows {
            state.insert_restored(key, version, Some(value));
        }
        state
    }

    fn insert_restored(&mut self, key: String, version: Version, value: Option<Vec<u8>>) {
        let live = value.is_some();
        if version > self.watermark {
            self.dirty.insert(key.clone());
        }
        if let Some(Slot { value: Some(_), .. }) = self.map.insert(
            key,
            Slot {
                version,
                value: value.map(Into::into),
            },
        ) {
            self.live -= 1;
        }
        if live {
            self.live += 1;
        }
    }

    /// Reads a snapshot written by [`Image::write`].
    pub fn read_snapshot<R: Read>(reader: &mut R) -> Result<(SnapshotMeta, KvState), CodecError> {
        let header: SnapshotHeader = codec::decode_from(reader)?;
        if header.format != SNAPSHOT_FORMAT {
            return Err(CodecError::new(format!("unknown snapshot format {}", header.format)));
        }
        let mut state = KvState {
            last_applied: header.meta.last_log_id,
            membership: header.meta.last_membership.clone(),
            watermark: header.watermark,
            ..KvState::default()
        };
        for _ in 0..header.records {
            let record: Record = codec::decode_from(reader)?;
            state.insert_restored(record.key, record.version, record.value);
        }
        Ok((header.meta, state))
    }
}

impl Image {
    /// Serializes the image as the snapshot described by `meta`. Same state, same bytes.
    pub fn write<W: Write>(&self, meta: &SnapshotMeta, writer: &mut W) -> Result<(), CodecError> {
        let header = SnapshotHeader {
            format: SNAPSHOT_FORMAT,
            meta: meta.clone(),
            watermark: self.watermark,
            records: self.map.len() as u64,
        };
        codec::encode_into(&header, writer)?;
        for (key, slot) in &self.map {
            let record = RecordRef {
                key,
                version: slot.version,
                value: slot.value.as_deref(),
            };
            codec::encode_into(&record, writer)?;
        }
        Ok(())
    }
}
