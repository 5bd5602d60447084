//! openraft's storage conformance suite against the real redb log store and the file-backed
//! state machine, each test in a fresh temporary directory.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tessera_cluster::types::{NodeId, TypeConfig};
use tessera_cluster::{LogStore, StateMachine};

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = LogStore::open(&dir.path().join("raft-log.redb")).expect("open redb log");
        let sm = StateMachine::open(&dir.path().join("snapshots"))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn the_redb_log_store_and_state_machine_pass_openraft_s_suite() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
