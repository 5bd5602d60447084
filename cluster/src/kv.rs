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
//!
//! ## Streams
//!
//! Beside the map, the state holds append-only, hash-chained text streams (an audit trail, for
//! the layer above). `RawOp::Append` gives its text the stream's next sequence number (gapless,
//! from 1, in log order) and chains it:
//!
//! ```text
//!   hash(n) = SHA-256( hash(n−1) ‖ n as 8 bytes, big-endian ‖ text(n) )      hash(0) = 32 zero bytes
//! ```
//!
//! Entries stay here (and in snapshots) until the durable store holds them: the flusher writes
//! them in the same transaction as the map's changes, and `Compact { upto }` drops the entries
//! appended at or below `upto`. The stream's head (last sequence number and hash) is kept
//! forever, so the chain continues across compactions, snapshots and restores.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;

use openraft::EntryPayload;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// One entry of a hash-chained stream, as `apply` recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// 1, 2, 3, … within the stream, in log order, without gaps.
    pub seq: u64,
    /// The log index that appended it.
    pub version: Version,
    /// The hash of the entry before (zeros for the first).
    pub prev: [u8; 32],
    /// `SHA-256(prev ‖ seq (8 bytes, big-endian) ‖ text)`.
    pub hash: [u8; 32],
    pub text: String,
}

impl StreamEntry {
    /// The chain's step: the hash of `text` appended as `seq` after `prev`.
    pub fn chain(prev: &[u8; 32], seq: u64, text: &str) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(prev);
        digest.update(seq.to_be_bytes());
        digest.update(text.as_bytes());
        digest.finalize().into()
    }
}

/// Where a stream stands: its last entry (sequence number and hash), which never goes away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    /// The last sequence number used (0: none yet).
    pub last: u64,
    pub hash: [u8; 32],
}

/// A stream's head and the entries the durable store does not hold yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Stream {
    head: StreamHead,
    pending: BTreeMap<u64, StreamEntry>,
}

/// The state machine's data. `dirty` is local bookkeeping, derived from the rest: it is neither
/// replicated nor part of a snapshot.
#[derive(Debug, Default)]
pub(crate) struct KvState {
    map: BTreeMap<String, Slot>,
    streams: BTreeMap<String, Stream>,
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
    streams: BTreeMap<String, Stream>,
}

/// 1: the map only. 2: the map, then the streams (a `Vec<StreamImage>` after the records).
const SNAPSHOT_FORMAT: u32 = 2;

#[derive(Serialize, Deserialize)]
struct StreamImage {
    name: String,
    head: StreamHead,
    pending: Vec<StreamEntry>,
}

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

    /// Where `stream` stands (nothing appended yet: the zero head).
    pub fn stream_head(&self, stream: &str) -> StreamHead {
        self.streams.get(stream).map(|s| s.head).unwrap_or_default()
    }

    /// Every stream's head, by name.
    pub fn stream_heads(&self) -> Vec<(String, StreamHead)> {
        self.streams.iter().map(|(name, s)| (name.clone(), s.head)).collect()
    }

    /// Entries of every stream that the durable store may not hold yet.
    pub fn stream_backlog(&self) -> usize {
        self.streams.values().map(|s| s.pending.len()).sum()
    }

    /// Whether nothing waits for the durable store: no dirty key and no pending stream entry.
    pub fn nothing_to_flush(&self) -> bool {
        self.dirty.is_empty() && self.stream_backlog() == 0
    }

    /// Whether a compaction up to `upto` would drop anything: a tombstone or a stream entry at or
    /// below it.
    pub fn compactable(&self, upto: Version) -> bool {
        upto > self.watermark
            && (self.streams.values().any(|s| s.pending.values().next().is_some_and(|e| e.version <= upto))
                || self
                    .dirty
                    .iter()
                    .any(|key| self.map.get(key).is_some_and(|s| s.value.is_none() && s.version <= upto)))
    }

    /// Up to `limit` pending entries of `stream` after sequence number `after`, in order.
    pub fn stream_entries(&self, stream: &str, after: u64, limit: usize) -> Vec<StreamEntry> {
        self.streams
            .get(stream)
            .map(|s| s.pending.range(after.saturating_add(1)..).take(limit).map(|(_, e)| e.clone()).collect())
            .unwrap_or_default()
    }

    /// Entries appended above log index `above`, every stream, in (stream, seq) order.
    pub fn stream_rows(&self, above: Version) -> Vec<(String, StreamEntry)> {
        self.streams
            .iter()
            .flat_map(|(name, s)| {
                s.pending.values().filter(move |e| e.version > above).map(move |e| (name.clone(), e.clone()))
            })
            .collect()
    }

    /// The live value of `key` and the version that wrote it.
    pub fn get(&self, key: &str) -> Option<(Version, Arc<[u8]>)> {
        let slot = self.map.get(key)?;
        slot.value.as_ref().map(|v| (slot.version, Arc::clone(v)))
    }

    /// Live entries whose key starts with `prefix` and sorts after `after`, in key order.
    pub fn scan_prefix<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, Version, &'a Arc<[u8]>)> + 'a {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let start = match after {
            Some(after) if after >= prefix => Excluded(after),
            _ => Included(prefix),
        };
        self.map
            .range::<str, _>((start, Unbounded))
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
                return TxnOutcome::Conflict { key: key.clone(), actual };
            }
        }
        for op in txn.ops {
            match op {
                RawOp::Put { key, value } => {
                    let slot = Slot { version, value: Some(value.into()) };
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
                RawOp::Append { stream, text } => {
                    let stream = self.streams.entry(stream).or_default();
                    let seq = stream.head.last + 1;
                    let hash = StreamEntry::chain(&stream.head.hash, seq, &text);
                    let entry = StreamEntry { seq, version, prev: stream.head.hash, hash, text };
                    stream.pending.insert(seq, entry);
                    stream.head = StreamHead { last: seq, hash };
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
        for stream in self.streams.values_mut() {
            stream.pending.retain(|_, entry| entry.version > upto);
        }
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
            streams: self.streams.clone(),
        }
    }

    /// A state built from the durable store's rows and stream heads at `meta` (restore after
    /// total loss of local disks). The store holds every stream entry up to `meta`, so none is
    /// pending.
    pub fn from_rows(
        meta: &SnapshotMeta,
        rows: impl IntoIterator<Item = (String, Version, Vec<u8>)>,
        heads: impl IntoIterator<Item = (String, StreamHead)>,
    ) -> KvState {
        let mut state = KvState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            watermark: meta.last_log_id.map_or(0, |l| l.index),
            streams: heads.into_iter().map(|(name, head)| (name, Stream { head, pending: BTreeMap::new() })).collect(),
            ..KvState::default()
        };
        state.fill(rows.into_iter().map(|(key, version, value)| (key, Slot { version, value: Some(value.into()) })));
        state
    }

    /// Adopts `slots` (each key once) as the whole map, counting live keys and marking as dirty
    /// what the durable store, at this state's watermark, does not hold yet. Collecting sorts
    /// once and builds the tree in bulk, much faster than inserting one key at a time.
    fn fill(&mut self, slots: impl IntoIterator<Item = (String, Slot)>) {
        self.map = slots.into_iter().collect();
        self.live = self.map.values().filter(|slot| slot.value.is_some()).count();
        let watermark = self.watermark;
        self.dirty = self.map.iter().filter(|(_, slot)| slot.version > watermark).map(|(key, _)| key.clone()).collect();
    }

    /// Reads a snapshot written by [`Image::write`].
    pub fn read_snapshot<R: Read>(reader: &mut R) -> Result<(SnapshotMeta, KvState), CodecError> {
        let header: SnapshotHeader = codec::decode_from(reader)?;
        if !(1..=SNAPSHOT_FORMAT).contains(&header.format) {
            return Err(CodecError::new(format!("unknown snapshot format {}", header.format)));
        }
        let mut state = KvState {
            last_applied: header.meta.last_log_id,
            membership: header.meta.last_membership.clone(),
            watermark: header.watermark,
            ..KvState::default()
        };
        let mut failed = None;
        let records = (0..header.records).map_while(|_| match codec::decode_from::<Record, _>(reader) {
            Ok(record) => Some((record.key, Slot { version: record.version, value: record.value.map(Into::into) })),
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        state.fill(records);
        if let Some(e) = failed {
            return Err(e);
        }
        if header.format >= 2 {
            let streams: Vec<StreamImage> = codec::decode_from(reader)?;
            state.streams = streams
                .into_iter()
                .map(|s| {
                    (s.name, Stream { head: s.head, pending: s.pending.into_iter().map(|e| (e.seq, e)).collect() })
                })
                .collect();
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
            let record = RecordRef { key, version: slot.version, value: slot.value.as_deref() };
            codec::encode_into(&record, writer)?;
        }
        let streams: Vec<StreamImage> = self
            .streams
            .iter()
            .map(|(name, s)| StreamImage {
                name: name.clone(),
                head: s.head,
                pending: s.pending.values().cloned().collect(),
            })
            .collect();
        codec::encode_into(&streams, writer)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, Membership};
    use proptest::prelude::*;

    use super::*;
    use crate::types::NodeInfo;

    fn entry(index: u64, command: Command) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(command) }
    }

    fn put(key: &str, value: &[u8]) -> RawOp {
        RawOp::Put { key: key.to_string(), value: value.to_vec() }
    }

    fn txn(compares: Vec<(&str, Expect)>, ops: Vec<RawOp>) -> RawTxn {
        RawTxn { compares: compares.into_iter().map(|(k, e)| Compare { key: k.to_string(), expect: e }).collect(), ops }
    }

    fn image_bytes(state: &KvState) -> Vec<u8> {
        let meta = SnapshotMeta {
            last_log_id: state.last_applied(),
            last_membership: state.membership().clone(),
            snapshot_id: String::new(),
        };
        let mut bytes = Vec::new();
        state.image().write(&meta, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_transaction_commits_only_when_every_compare_holds() {
        let mut state = KvState::default();
        let first = state.apply(entry(1, Command::Txns(vec![txn(vec![("a", Expect::Absent)], vec![put("a", b"1")])])));
        assert_eq!(first, Applied::Txns(vec![TxnOutcome::Committed { version: 1 }]));

        let results = state.apply(entry(
            2,
            Command::Txns(vec![
                // Stale version: conflict, nothing written, not even the other key.
                txn(vec![("a", Expect::Version(7))], vec![put("a", b"x"), put("b", b"x")]),
                // Absent when present: conflict.
                txn(vec![("a", Expect::Absent)], vec![put("c", b"x")]),
                // Exact version: committed at this entry's index.
                txn(vec![("a", Expect::Version(1))], vec![put("a", b"2"), put("b", b"2")]),
            ]),
        ));
        assert_eq!(
            results,
            Applied::Txns(vec![
                TxnOutcome::Conflict { key: "a".into(), actual: Some(1) },
                TxnOutcome::Conflict { key: "a".into(), actual: Some(1) },
                TxnOutcome::Committed { version: 2 },
            ])
        );
        assert_eq!(state.get("a").map(|(v, b)| (v, b.to_vec())), Some((2, b"2".to_vec())));
        assert_eq!(state.get("b").map(|(v, _)| v), Some(2));
        assert_eq!(state.get("c"), None);
    }

    #[test]
    fn a_prefix_scan_pages_through_live_keys_in_order() {
        let mut state = KvState::default();
        let ops = ["a/1", "b/1", "b/2", "b/3", "b/4", "c/1"].iter().map(|k| put(k, b"v")).collect();
        state.apply(entry(1, Command::Txns(vec![txn(vec![], ops)])));
        state.apply(entry(2, Command::Txns(vec![txn(vec![], vec![RawOp::Delete { key: "b/2".into() }])])));
        let page = |after: Option<&str>, limit: usize| -> Vec<String> {
            state.scan_prefix("b/", after).take(limit).map(|(k, _, _)| k.to_string()).collect()
        };
        assert_eq!(page(None, 10), ["b/1", "b/3", "b/4"], "live keys only, in order");
        assert_eq!(page(None, 2), ["b/1", "b/3"]);
        assert_eq!(page(Some("b/3"), 2), ["b/4"], "resumes after the last key seen");
        assert_eq!(page(Some("b/2"), 2), ["b/3", "b/4"], "from a key deleted since");
        assert!(page(Some("b/4"), 2).is_empty());
        assert_eq!(page(Some("a/9"), 1), ["b/1"], "a cursor before the prefix starts at its first key");
    }

    #[test]
    fn later_transactions_in_a_batch_see_earlier_ones() {
        let mut state = KvState::default();
        let results = state.apply(entry(
            5,
            Command::Txns(vec![
                txn(vec![("k", Expect::Absent)], vec![put("k", b"1")]),
                txn(vec![("k", Expect::Absent)], vec![put("k", b"2")]),
            ]),
        ));
        assert_eq!(
            results,
            Applied::Txns(vec![
                TxnOutcome::Committed { version: 5 },
                TxnOutcome::Conflict { key: "k".into(), actual: Some(5) },
            ])
        );
    }

    #[test]
    fn a_delete_leaves_a_tombstone_until_the_store_has_caught_up() {
        let mut state = KvState::default();
        state.apply(entry(1, Command::Txns(vec![txn(vec![], vec![put("k", b"1")])])));
        state.apply(entry(2, Command::Txns(vec![txn(vec![], vec![RawOp::Delete { key: "k".into() }])])));
        assert_eq!(state.get("k"), None);
        assert_eq!((state.live_keys(), state.tombstones()), (0, 1));
        let dirty = state.dirty_rows(0);
        assert_eq!(dirty.len(), 1);
        assert_eq!((dirty[0].version, dirty[0].value.is_none()), (2, true));

        // Absent compares treat the tombstone as absent.
        let outcome = state.apply(entry(3, Command::Txns(vec![txn(vec![("k", Expect::Absent)], vec![])])));
        assert_eq!(outcome, Applied::Txns(vec![TxnOutcome::Committed { version: 3 }]));

        state.apply(entry(4, Command::Compact { upto: 2 }));
        assert_eq!((state.live_keys(), state.tombstones(), state.dirty_keys()), (0, 0, 0));
        assert_eq!(state.watermark(), 2);
    }

    #[test]
    fn compaction_keeps_changes_above_the_watermark() {
        let mut state = KvState::default();
        state.apply(entry(1, Command::Txns(vec![txn(vec![], vec![put("a", b"1"), put("b", b"1")])])));
        state.apply(entry(2, Command::Txns(vec![txn(vec![], vec![RawOp::Delete { key: "a".into() }])])));
        state.apply(entry(3, Command::Txns(vec![txn(vec![], vec![put("b", b"2")])])));
        state.apply(entry(4, Command::Compact { upto: 2 }));
        assert_eq!(state.tombstones(), 0);
        let dirty: Vec<(String, u64)> = state.dirty_rows(0).into_iter().map(|r| (r.key, r.version)).collect();
        assert_eq!(dirty, vec![("b".to_string(), 3)]);
        // An older compaction changes nothing.
        state.apply(entry(5, Command::Compact { upto: 1 }));
        assert_eq!(state.watermark(), 2);
    }

    #[test]
    fn membership_and_blank_entries_advance_last_applied() {
        let mut state = KvState::default();
        let membership = Membership::new(vec![[1u64].into()], BTreeMap::from([(1u64, NodeInfo::default())]));
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), 1);
        assert_eq!(state.apply(Entry { log_id, payload: EntryPayload::Membership(membership) }), Applied::Membership);
        assert_eq!(state.membership().log_id(), &Some(log_id));
        let blank = LogId::new(CommittedLeaderId::new(2, 1), 2);
        assert_eq!(state.apply(Entry { log_id: blank, payload: EntryPayload::Blank }), Applied::Blank);
        assert_eq!(state.last_applied(), Some(blank));
    }

    // ---- property tests --------------------------------------------------------------------

    const KEYS: [&str; 6] = ["a", "b", "c", "fam/1", "fam/2", "user/x"];

    fn arb_expect() -> impl Strategy<Value = Expect> {
        prop_oneof![Just(Expect::Absent), (0u64..24).prop_map(Expect::Version)]
    }

    fn arb_op() -> impl Strategy<Value = RawOp> {
        prop_oneof![
            3 => (0..KEYS.len(), prop::collection::vec(any::<u8>(), 0..6))
                .prop_map(|(k, v)| RawOp::Put { key: KEYS[k].to_string(), value: v }),
            1 => (0..KEYS.len()).prop_map(|k| RawOp::Delete { key: KEYS[k].to_string() }),
            1 => (0..STREAMS.len(), "[a-z]{0,4}")
                .prop_map(|(s, text)| RawOp::Append { stream: STREAMS[s].to_string(), text }),
        ]
    }

    const STREAMS: [&str; 2] = ["audit", "other"];

    fn arb_txn() -> impl Strategy<Value = RawTxn> {
        (prop::collection::vec((0..KEYS.len(), arb_expect()), 0..3), prop::collection::vec(arb_op(), 0..4)).prop_map(
            |(compares, ops)| RawTxn {
                compares: compares.into_iter().map(|(k, e)| Compare { key: KEYS[k].to_string(), expect: e }).collect(),
                ops,
            },
        )
    }

    /// One entry's command; `Compact` bounds are resolved against the index when applied.
    fn arb_command() -> impl Strategy<Value = Option<Vec<RawTxn>>> {
        prop_oneof![
            5 => prop::collection::vec(arb_txn(), 1..6).prop_map(Some),
            1 => Just(None),
        ]
    }

    fn entries(commands: Vec<Option<Vec<RawTxn>>>) -> Vec<Entry> {
        commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let index = i as u64 + 1;
                match c {
                    Some(txns) => entry(index, Command::Txns(txns)),
                    None => entry(index, Command::Compact { upto: index / 2 }),
                }
            })
            .collect()
    }

    /// The reference semantics, written as plainly as possible.
    #[derive(Default)]
    struct Model {
        live: BTreeMap<String, (u64, Vec<u8>)>,
        /// Every text ever appended to each stream, with the index that appended it.
        streams: BTreeMap<String, Vec<(u64, String)>>,
    }

    impl Model {
        fn apply(&mut self, index: u64, txn: &RawTxn) -> TxnOutcome {
            for c in &txn.compares {
                let actual = self.live.get(&c.key).map(|(v, _)| *v);
                let ok = match c.expect {
                    Expect::Absent => actual.is_none(),
                    Expect::Version(v) => actual == Some(v),
                };
                if !ok {
                    return TxnOutcome::Conflict { key: c.key.clone(), actual };
                }
            }
            for op in &txn.ops {
                match op {
                    RawOp::Put { key, value } => {
                        self.live.insert(key.clone(), (index, value.clone()));
                    }
                    RawOp::Delete { key } => {
                        self.live.remove(key);
                    }
                    RawOp::Append { stream, text } => {
                        self.streams.entry(stream.clone()).or_default().push((index, text.clone()));
                    }
                }
            }
            TxnOutcome::Committed { version: index }
        }

        /// The stream's head, chained from scratch.
        fn head(&self, stream: &str) -> StreamHead {
            let mut head = StreamHead::default();
            for (i, (_, text)) in self.streams.get(stream).into_iter().flatten().enumerate() {
                head = StreamHead { last: i as u64 + 1, hash: StreamEntry::chain(&head.hash, i as u64 + 1, text) };
            }
            head
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn replicas_that_apply_the_same_log_hold_byte_identical_state(commands in prop::collection::vec(arb_command(), 1..40)) {
            let log = entries(commands);
            let (mut one, mut two) = (KvState::default(), KvState::default());
            for e in &log {
                let a = one.apply(e.clone());
                let b = two.apply(e.clone());
                prop_assert_eq!(a, b);
            }
            prop_assert_eq!(image_bytes(&one), image_bytes(&two));
        }

        #[test]
        fn apply_matches_the_reference_model(commands in prop::collection::vec(arb_command(), 1..40)) {
            let mut state = KvState::default();
            let mut model = Model::default();
            for e in entries(commands) {
                let index = e.log_id.index;
                let expected: Option<Vec<TxnOutcome>> = match &e.payload {
                    EntryPayload::Normal(Command::Txns(txns)) => Some(txns.iter().map(|t| model.apply(index, t)).collect()),
                    _ => None,
                };
                let got = state.apply(e);
                if let Some(expected) = expected {
                    prop_assert_eq!(got, Applied::Txns(expected));
                }
                let live: BTreeMap<String, (u64, Vec<u8>)> = KEYS
                    .iter()
                    .filter_map(|k| state.get(k).map(|(v, b)| (k.to_string(), (v, b.to_vec()))))
                    .collect();
                prop_assert_eq!(&live, &model.live);
                prop_assert_eq!(state.live_keys(), model.live.len());
                // Streams: the chain as computed from scratch, and exactly the entries above the
                // watermark still pending, in order, gapless.
                for stream in STREAMS {
                    prop_assert_eq!(state.stream_head(stream), model.head(stream));
                    let texts = model.streams.get(stream).cloned().unwrap_or_default();
                    let expected: Vec<(u64, u64, String)> = texts
                        .iter()
                        .enumerate()
                        .filter(|(_, (index, _))| *index > state.watermark())
                        .map(|(i, (index, text))| (i as u64 + 1, *index, text.clone()))
                        .collect();
                    let pending: Vec<(u64, u64, String)> = state
                        .stream_entries(stream, 0, usize::MAX)
                        .into_iter()
                        .map(|e| (e.seq, e.version, e.text))
                        .collect();
                    prop_assert_eq!(pending, expected);
                }
                // Every tombstone is above the watermark, and dirty covers it.
                for row in state.dirty_rows(0) {
                    prop_assert!(row.version > state.watermark());
                }
            }
        }

        #[test]
        fn a_replica_restarted_from_a_snapshot_converges_with_one_that_never_stopped(
            commands in prop::collection::vec(arb_command(), 2..40),
            cut in any::<prop::sample::Index>(),
        ) {
            let log = entries(commands);
            let cut = cut.index(log.len());
            let mut steady = KvState::default();
            let mut restarted = KvState::default();
            for e in &log[..cut] {
                steady.apply(e.clone());
                restarted.apply(e.clone());
            }
            let bytes = image_bytes(&restarted);
            let (_, mut restarted) = KvState::read_snapshot(&mut bytes.as_slice()).unwrap();
            prop_assert_eq!(image_bytes(&restarted), bytes);
            prop_assert_eq!(restarted.dirty_keys(), steady.dirty_keys());
            for e in &log[cut..] {
                prop_assert_eq!(steady.apply(e.clone()), restarted.apply(e.clone()));
            }
            prop_assert_eq!(image_bytes(&steady), image_bytes(&restarted));
        }
    }
}
