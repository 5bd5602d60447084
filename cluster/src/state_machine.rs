//! openraft's `RaftStateMachine` over [`KvState`], with snapshots as files in the data directory.
//!
//! The state lives in memory behind a `RwLock` shared with readers (the typed store, the
//! flusher, the operator view). Snapshots are files: `current.snap` is the latest one, written
//! to a temporary name, fsynced and renamed, so a crash leaves the previous snapshot intact.
//! Building a snapshot copies the map under the read lock (values are `Arc`s, so the copy is
//! cheap) and serializes the copy on the blocking pool while applies continue.

use std::fs;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::EntryPayload;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use parking_lot::{Mutex, RwLock};

use crate::kv::{Image, KvState};
use crate::types::{Applied, Command, Entry, LogId, RawOp, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const CURRENT: &str = "current.snap";

/// State shared between the state machine, its snapshot builders and readers.
pub(crate) struct Shared {
    pub state: RwLock<KvState>,
    dir: PathBuf,
    current: Mutex<Option<SnapshotMeta>>,
    /// When the current snapshot was written (built, installed or restored).
    current_at: Mutex<Option<std::time::SystemTime>>,
    /// Serializes writers of `current.snap` (a build and an install may overlap).
    file_lock: tokio::sync::Mutex<()>,
    seq: AtomicU64,
    /// Change counters of watched key prefixes (see [`Shared::watch`]).
    watched: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl Shared {
    /// A counter that grows whenever an applied entry writes a key under one of `prefixes`
    /// (or the whole state is replaced: a snapshot installed or restored). Bumped while the
    /// write lock is held, so a reader that sees the new count and then reads the state sees
    /// the change. Lets callers keep a derived view (say, the signing keys) and check it is
    /// current with one atomic load instead of a read of the state.
    pub(crate) fn watch(&self, prefixes: &[&str]) -> Arc<AtomicU64> {
        let counter = Arc::new(AtomicU64::new(0));
        let mut watched = self.watched.lock();
        for prefix in prefixes {
            watched.push((prefix.to_string(), Arc::clone(&counter)));
        }
        counter
    }

    fn touched(&self, entries: &[Entry]) {
        let watched = self.watched.lock();
        if watched.is_empty() {
            return;
        }
        for entry in entries {
            let EntryPayload::Normal(Command::Txns(txns)) = &entry.payload else { continue };
            for op in txns.iter().flat_map(|txn| &txn.ops) {
                let key = match op {
                    RawOp::Put { key, .. } | RawOp::Delete { key } => key,
                    RawOp::Append { .. } => continue,
                };
                for (prefix, counter) in watched.iter() {
                    if key.starts_with(prefix.as_str()) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    fn touched_all(&self) {
        for (_, counter) in self.watched.lock().iter() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub struct StateMachine {
    shared: Arc<Shared>,
}

pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

fn snapshot_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Write, AnyError::error(e.to_string())).into()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Shared {
    fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// Writes `image` as the current snapshot, unless a newer one is already there.
    async fn persist(self: &Arc<Self>, meta: SnapshotMeta, image: Image) -> Result<(), StorageError> {
        let _guard = self.file_lock.lock().await;
        if let Some(existing) = self.current.lock().as_ref()
            && existing.last_log_id > meta.last_log_id
        {
            return Ok(());
        }
        let tmp = self.dir.join(format!("building-{}.tmp", self.seq.fetch_add(1, Ordering::Relaxed)));
        let dest = self.current_path();
        let dir = self.dir.clone();
        let written = meta.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let file = fs::File::create(&tmp)?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            image.write(&written, &mut writer).map_err(std::io::Error::other)?;
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, &dest)?;
            sync_dir(&dir)
        })
        .await
        .map_err(snapshot_err)?
        .map_err(snapshot_err)?;
        *self.current.lock() = Some(meta);
        *self.current_at.lock() = Some(std::time::SystemTime::now());
        Ok(())
    }
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the latest local snapshot if there is one.
    pub fn open(dir: &Path) -> Result<StateMachine, StorageError> {
        fs::create_dir_all(dir).map_err(snapshot_err)?;
        // Leftovers of interrupted writes are never valid snapshots.
        for entry in fs::read_dir(dir).map_err(snapshot_err)? {
            let path = entry.map_err(snapshot_err)?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(snapshot_err)?;
            }
        }
        let path = dir.join(CURRENT);
        let written = fs::metadata(&path).and_then(|m| m.modified()).ok();
        let (current, state) = if path.exists() {
            let file = fs::File::open(&path).map_err(snapshot_err)?;
            let (meta, state) =
                KvState::read_snapshot(&mut BufReader::with_capacity(1 << 20, file)).map_err(snapshot_err)?;
            (Some(meta), state)
        } else {
            (None, KvState::default())
        };
        Ok(StateMachine {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                dir: dir.to_path_buf(),
                current: Mutex::new(current),
                current_at: Mutex::new(written),
                file_lock: tokio::sync::Mutex::new(()),
                seq: AtomicU64::new(0),
                watched: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Replaces the state with one rebuilt from the durable store and makes it the current snapshot.
    pub(crate) async fn restore(&self, meta: SnapshotMeta, state: KvState) -> Result<(), StorageError> {
        let image = state.image();
        {
            let mut current = self.shared.state.write();
            *current = state;
            self.shared.touched_all();
        }
        self.shared.persist(meta, image).await
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    pub fn has_snapshot(&self) -> bool {
        self.shared.current.lock().is_some()
    }
}

impl Shared {
    pub fn current_snapshot(&self) -> Option<SnapshotMeta> {
        self.current.lock().clone()
    }

    /// How old the current snapshot is.
    pub fn snapshot_age(&self) -> Option<std::time::Duration> {
        self.current_at.lock().and_then(|at| at.elapsed().ok())
    }

    /// The current snapshot's metadata and an open handle on its file, taken together so a
    /// concurrent replacement cannot pair one snapshot's metadata with another's content.
    async fn open_current(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let _guard = self.file_lock.lock().await;
        let Some(meta) = self.current_snapshot() else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.current_path()).await.map_err(snapshot_err)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let image = self.shared.state.read().image();
        let last = image.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: image.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index),
                self.shared.seq.fetch_add(1, Ordering::Relaxed)
            ),
        };
        self.shared.persist(meta.clone(), image).await?;
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        // A concurrent install may have left a newer snapshot in place; that one is returned.
        self.shared.open_current().await?.ok_or_else(|| snapshot_err("snapshot vanished after it was written"))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.shared.state.read();
        Ok((state.last_applied(), state.membership().clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut state = self.shared.state.write();
        self.shared.touched(&entries);
        Ok(entries.into_iter().map(|entry| state.apply(entry)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { shared: self.shared() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // An anonymous file: unlinked at once, so an interrupted transfer leaves nothing behind.
        let path = self.shared.dir.join(format!("receiving-{}.tmp", self.shared.seq.fetch_add(1, Ordering::Relaxed)));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(snapshot_err)?;
        tokio::fs::remove_file(&path).await.map_err(snapshot_err)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let file = snapshot.into_std().await;
        let (found, state) = tokio::task::spawn_blocking(move || {
            let mut file = file;
            file.seek(SeekFrom::Start(0))?;
            KvState::read_snapshot(&mut BufReader::with_capacity(1 << 20, file)).map_err(std::io::Error::other)
        })
        .await
        .map_err(snapshot_err)?
        .map_err(snapshot_err)?;
        if found.last_log_id != meta.last_log_id || found.last_membership != meta.last_membership {
            return Err(snapshot_err(format!(
                "snapshot content {:?} does not match its metadata {:?}",
                found.last_log_id, meta.last_log_id
            )));
        }
        let image = state.image();
        {
            let mut current = self.shared.state.write();
            *current = state;
            self.shared.touched_all();
        }
        self.shared.persist(meta.clone(), image).await?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.shared.open_current().await
    }
}
