//! `tessera audit verify`: checks what the store holds of the audit trail.
//!
//! ```text
//!   checkpoints ── each signed by the checkpoint key, their own chain intact ──► seq → hash
//!   anchor ─────── absent: the trail starts at seq 1 from zeros;
//!                  present: (first_seq, prev) must be a signed checkpoint at first_seq − 1
//!   entries ────── seq gapless from there, prev = the hash before,
//!                  hash = SHA-256(prev ‖ seq as 8 bytes big-endian ‖ text),
//!                  hash = the checkpoint's wherever one is signed for that seq
//!   heads ──────── the last entry is the stream's recorded head; no checkpoint beyond it
//! ```
//!
//! The first failure is reported with the `seq` it concerns; anything after it is not looked
//! at. An edited text fails its own hash; a deleted or inserted row breaks the sequence or a
//! `prev`; a rewritten chain (every hash after an edit recomputed) fails at the next checkpoint.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use tessera_cluster::StreamEntry;

use super::checkpoint::Checkpoint;
use super::store::{Entry, Snapshot};

/// The first thing wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bad {
    /// The audit `seq` concerned (for a checkpoint: the checkpoint's own sequence number).
    pub seq: u64,
    pub stream: &'static str,
    pub why: String,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} seq {}: {}", self.stream, self.seq, self.why)
    }
}

/// What an intact trail holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The first and last `seq` kept (none: empty).
    pub kept: Option<(u64, u64)>,
    pub checkpoints: u64,
    /// The last checkpointed `seq` (events after it are covered by the chain alone).
    pub last_checkpoint: Option<u64>,
    /// The `seq` before the first kept one, when older events were purged.
    pub purged_through: Option<u64>,
}

/// Walks one stream's entries, checking sequence and hashes.
struct Chain {
    stream: &'static str,
    next_seq: u64,
    prev: [u8; 32],
}

impl Chain {
    fn push(&mut self, entry: &Entry) -> Result<(), Bad> {
        let bad = |seq, why: String| Bad { seq, stream: self.stream, why };
        if entry.seq != self.next_seq {
            return Err(bad(
                self.next_seq,
                format!("missing: the next stored entry is seq {} (a row was deleted or inserted)", entry.seq),
            ));
        }
        if entry.prev != self.prev {
            return Err(bad(entry.seq, "prev_hash is not the hash of the entry before it".into()));
        }
        if StreamEntry::chain(&entry.prev, entry.seq, &entry.text) != entry.hash {
            return Err(bad(entry.seq, "hash does not cover its text (the row was changed)".into()));
        }
        self.next_seq += 1;
        self.prev = entry.hash;
        Ok(())
    }

    fn finish(&self, head: Option<(u64, [u8; 32])>) -> Result<(), Bad> {
        let last = self.next_seq - 1;
        let bad = |seq, why: String| Err(Bad { seq, stream: self.stream, why });
        match head {
            None if last == 0 => Ok(()),
            None => bad(last, "the stream has entries but no recorded head".into()),
            Some((seq, _)) if seq > last => bad(last + 1, format!("missing: the recorded head is seq {seq}")),
            Some((seq, _)) if seq < last => bad(seq + 1, format!("beyond the recorded head (seq {seq}): inserted")),
            Some((_, hash)) if hash != self.prev => bad(last, "hash is not the recorded head's".into()),
            Some(_) => Ok(()),
        }
    }
}

/// Checks the checkpoints of `snapshot` and returns the hash each vouches for, by audit `seq`.
pub fn checkpoints(snapshot: &Snapshot, key: &VerifyingKey) -> Result<BTreeMap<u64, [u8; 32]>, Bad> {
    let mut chain = Chain { stream: super::checkpoint::STREAM, next_seq: 1, prev: [0; 32] };
    let mut vouched = BTreeMap::new();
    for entry in &snapshot.checkpoints {
        chain.push(entry)?;
        let bad = |why: String| Bad { seq: entry.seq, stream: super::checkpoint::STREAM, why };
        let checkpoint = Checkpoint::parse(&entry.text).map_err(bad)?;
        let hash = checkpoint.verify(key).map_err(bad)?;
        if vouched.insert(checkpoint.seq, hash).is_some_and(|earlier| earlier != hash) {
            return Err(bad(format!("a second checkpoint for audit seq {} disagrees", checkpoint.seq)));
        }
    }
    chain.finish(snapshot.checkpoints_head)?;
    Ok(vouched)
}

/// Checks audit entries one by one, in `seq` order, against the snapshot's anchor and the
/// checkpoints it vouches for; [`Verifier::finish`] then checks the end.
pub struct Verifier {
    chain: Chain,
    vouched: BTreeMap<u64, [u8; 32]>,
    first: Option<u64>,
    purged_through: Option<u64>,
}

impl Verifier {
    pub fn new(snapshot: &Snapshot, vouched: BTreeMap<u64, [u8; 32]>) -> Result<Verifier, Bad> {
        let (next_seq, prev, purged_through) = match snapshot.anchor {
            None => (1, [0; 32], None),
            Some((first, prev)) => {
                if vouched.get(&(first - 1)) != Some(&prev) {
                    return Err(Bad {
                        seq: first,
                        stream: "audit",
                        why: format!(
                            "the purge anchor (entries before seq {first} removed) is not a signed checkpoint: \
                             rows were deleted outside retention"
                        ),
                    });
                }
                (first, prev, Some(first - 1))
            }
        };
        Ok(Verifier { chain: Chain { stream: "audit", next_seq, prev }, vouched, first: None, purged_through })
    }

    pub fn push(&mut self, entry: &Entry) -> Result<(), Bad> {
        self.chain.push(entry)?;
        self.first.get_or_insert(entry.seq);
        match self.vouched.get(&entry.seq) {
            Some(hash) if *hash != entry.hash => Err(Bad {
                seq: entry.seq,
                stream: "audit",
                why: "hash differs from the signed checkpoint: the chain up to here was rewritten".into(),
            }),
            _ => Ok(()),
        }
    }

    pub fn finish(self, head: Option<(u64, [u8; 32])>) -> Result<Report, Bad> {
        self.chain.finish(head)?;
        let last = self.chain.next_seq - 1;
        if let Some((&seq, _)) = self.vouched.range(last + 1..).next() {
            return Err(Bad { seq: last + 1, stream: "audit", why: format!("missing: a checkpoint covers seq {seq}") });
        }
        Ok(Report {
            kept: self.first.map(|first| (first, last)),
            checkpoints: self.vouched.len() as u64,
            last_checkpoint: self.vouched.keys().next_back().copied(),
            purged_through: self.purged_through,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::signing_key;

    fn entries(texts: &[&str]) -> Vec<Entry> {
        let mut prev = [0; 32];
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let seq = i as u64 + 1;
                let hash = StreamEntry::chain(&prev, seq, text);
                let entry = Entry { seq, prev, hash, text: text.to_string() };
                prev = hash;
                entry
            })
            .collect()
    }

    fn checkpoint_entries(key: &ed25519_dalek::SigningKey, at: &[&Entry]) -> Vec<Entry> {
        let texts: Vec<String> = at.iter().map(|e| Checkpoint::sign(key, e.seq, &e.hash, 1).text()).collect();
        entries(&texts.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn run(snapshot: &Snapshot, rows: &[Entry], key: &VerifyingKey) -> Result<Report, Bad> {
        let mut verifier = Verifier::new(snapshot, checkpoints(snapshot, key)?)?;
        for row in rows {
            verifier.push(row)?;
        }
        verifier.finish(snapshot.audit_head)
    }

    fn snapshot(rows: &[Entry], checkpoints: Vec<Entry>) -> Snapshot {
        Snapshot {
            anchor: None,
            audit_head: rows.last().map(|e| (e.seq, e.hash)),
            checkpoints_head: checkpoints.last().map(|e| (e.seq, e.hash)),
            checkpoints,
        }
    }

    #[test]
    fn an_intact_trail_verifies_and_each_kind_of_tampering_names_its_seq() {
        let key = signing_key(&[1; 32]);
        let public = key.verifying_key();
        let rows = entries(&["a", "b", "c", "d", "e"]);
        let snap = snapshot(&rows, checkpoint_entries(&key, &[&rows[3]]));
        assert_eq!(run(&snap, &rows, &public).map(|r| r.kept), Ok(Some((1, 5))));

        let mut edited = rows.clone();
        edited[2].text = "C".into();
        assert_eq!(run(&snap, &edited, &public).unwrap_err().seq, 3, "an edited text");

        let mut deleted = rows.clone();
        deleted.remove(1);
        assert_eq!(run(&snap, &deleted, &public).unwrap_err().seq, 2, "a deleted row");

        assert_eq!(run(&snap, &rows[..4], &public).unwrap_err().seq, 5, "the last row deleted");

        let mut inserted = rows.clone();
        let extra = entries(&["a", "b", "c", "d", "e", "f"]).pop().unwrap();
        inserted.push(extra);
        assert_eq!(run(&snap, &inserted, &public).unwrap_err().seq, 6, "a row beyond the head");

        // Rewrite "b" and recompute everything after it, head included: the checkpoint at 4 catches it.
        let rewritten = entries(&["a", "B", "c", "d", "e"]);
        let forged = Snapshot { audit_head: Some((5, rewritten[4].hash)), ..snapshot(&rows, snap.checkpoints.clone()) };
        assert_eq!(run(&forged, &rewritten, &public).unwrap_err().seq, 4, "a recomputed chain");

        assert_eq!(run(&snap, &rows, &signing_key(&[2; 32]).verifying_key()).unwrap_err().stream, "audit-checkpoints");
    }

    #[test]
    fn a_purge_verifies_from_its_signed_anchor_and_an_unsigned_one_is_caught() {
        let key = signing_key(&[1; 32]);
        let rows = entries(&["a", "b", "c", "d", "e"]);
        let checkpoints = checkpoint_entries(&key, &[&rows[1]]);
        let purged = Snapshot { anchor: Some((3, rows[1].hash)), ..snapshot(&rows, checkpoints.clone()) };
        let report = run(&purged, &rows[2..], &key.verifying_key()).unwrap();
        assert_eq!((report.kept, report.purged_through), (Some((3, 5)), Some(2)));

        let unsigned = Snapshot { anchor: Some((4, rows[2].hash)), ..snapshot(&rows, checkpoints) };
        assert_eq!(run(&unsigned, &rows[3..], &key.verifying_key()).unwrap_err().seq, 4);
    }
}
