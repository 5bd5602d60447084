//! Membership changes and leadership transfer. They run on the leader; any node forwards a
//! change there, one hop, over the signed peer network (`/raft/change`), so the layers above
//! need no client of their own and pass no credential on.
//!
//! ## Leadership transfer
//!
//! openraft 0.9 has no transfer, so the leader: makes every voter but the target hold its
//! elections, stops proposing new entries, waits until the target holds its whole log, and has
//! the target stand. The target's higher term makes the leader step down on the next
//! heartbeat, and the leader (whose log is no longer than the target's) votes for it on the
//! target's next round, which it asks for at once. Holds and the pause lapse by themselves, so
//! a transfer that dies half-way heals; they are released as soon as the target leads.

use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use openraft::ChangeMembers;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::network::paths;
use crate::node::ClusterNode;
use crate::peer::{PeerService, encoded};
use crate::store::StoreValue;
use crate::types::{NodeId, NodeInfo};

/// How long a forwarded change may take (adding a learner waits until it caught up).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one hold or election request to a peer may take.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A change to the cluster's members or leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Add a node as a learner and wait until it has caught up.
    AddLearner { id: NodeId, info: NodeInfo },
    /// Make a learner a voter.
    Promote(NodeId),
    /// Remove a node, voter or learner.
    Remove(NodeId),
    /// Move leadership to voter `id`.
    Transfer(NodeId),
}

/// What a change that completed reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Changed {
    Done,
    /// Leadership moved (or already was) there, in `took_ms`.
    Transferred {
        took_ms: u64,
    },
}

/// Why a change was refused, in words an operator can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error("another membership change is in progress; retry when it is done")]
    InProgress,
    #[error("the change would leave the cluster without voters")]
    WouldBeEmpty,
    #[error("that node is not a learner of this cluster (add it as a learner first)")]
    NotALearner,
    #[error("that node is not a voter of this cluster")]
    NotAVoter,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MembershipError {
    /// Only the leader changes membership; `leader` is who does, if known.
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    #[error(transparent)]
    Refused(Refusal),
    /// The change did not complete (no quorum, a timeout, a transfer that did not take); the
    /// text is for the log.
    #[error("{0}")]
    Failed(String),
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>> for MembershipError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> MembershipError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                MembershipError::NotLeader { leader: forward.leader_id.zip(forward.leader_node) }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(change)) => {
                MembershipError::Refused(match change {
                    ChangeMembershipError::InProgress(_) => Refusal::InProgress,
                    ChangeMembershipError::EmptyMembership(_) => Refusal::WouldBeEmpty,
                    ChangeMembershipError::LearnerNotFound(_) => Refusal::NotALearner,
                })
            }
            RaftError::Fatal(fatal) => MembershipError::Failed(fatal.to_string()),
        }
    }
}

impl<V: StoreValue> ClusterNode<V> {
    /// Adds `id` as a learner and waits until it has caught up (leader only).
    pub async fn add_learner(&self, id: NodeId, info: NodeInfo) -> Result<(), MembershipError> {
        self.raft().add_learner(id, info, true).await.map(|_| ()).map_err(MembershipError::from)
    }

    /// Makes learner `id` a voter (leader only).
    pub async fn promote(&self, id: NodeId) -> Result<(), MembershipError> {
        let change = ChangeMembers::AddVoterIds([id].into());
        self.raft().change_membership(change, false).await.map(|_| ()).map_err(MembershipError::from)
    }

    /// Removes `id` from the cluster, voter or learner (leader only).
    pub async fn remove(&self, id: NodeId) -> Result<(), MembershipError> {
        let voters = self.voters();
        if voters.contains(&id) {
            let change = ChangeMembers::RemoveVoters([id].into());
            self.raft().change_membership(change, false).await.map_err(MembershipError::from)?;
        } else {
            let change = ChangeMembers::RemoveNodes([id].into());
            self.raft().change_membership(change, false).await.map_err(MembershipError::from)?;
        }
        Ok(())
    }

    /// Starts an election on this node now. Voters that still hear from a healthy leader refuse
    /// (openraft's leader lease), but the leader steps down when this node answers its next
    /// heartbeat with the higher term, and grants the vote on the next round: with the other
    /// voters holding their elections (`hold_elections`), this moves leadership here.
    pub async fn elect(&self) -> Result<(), MembershipError> {
        self.raft().trigger().elect().await.map_err(|e| MembershipError::Failed(e.to_string()))
    }

    /// Runs `change` on the leader: here if this node leads, else forwarded there.
    pub async fn change(&self, change: Change) -> Result<Changed, MembershipError> {
        match self.change_here(change.clone()).await {
            Err(MembershipError::NotLeader { leader: Some((leader, info)) }) => {
                let body = codec::encode(&change).map_err(|e| MembershipError::Failed(e.to_string()))?;
                let reply = self
                    .peer_client()
                    .post(leader, &info.peer_addr, paths::CHANGE, body, CHANGE_TIMEOUT)
                    .await
                    .map_err(|e| MembershipError::Failed(format!("forwarding to the leader: {e}")))?;
                codec::decode::<Result<Changed, MembershipError>>(&reply)
                    .map_err(|e| MembershipError::Failed(format!("the leader's answer: {e}")))?
            }
            other => other,
        }
    }

    /// Runs `change` if this node leads (`NotLeader` otherwise).
    async fn change_here(&self, change: Change) -> Result<Changed, MembershipError> {
        match change {
            Change::AddLearner { id, info } => self.add_learner(id, info).await.map(|()| Changed::Done),
            Change::Promote(id) => self.promote(id).await.map(|()| Changed::Done),
            Change::Remove(id) => self.remove(id).await.map(|()| Changed::Done),
            Change::Transfer(target) => self.transfer(target).await,
        }
    }

    /// Moves leadership to voter `target` (see the module docs).
    async fn transfer(&self, target: NodeId) -> Result<Changed, MembershipError> {
        let status = self.status();
        if status.leader_id == Some(target) {
            return Ok(Changed::Transferred { took_ms: 0 });
        }
        let leadership = self.leadership();
        if !leadership.this_node_leads {
            let leader = leadership.leader.and_then(|(id, info)| info.map(|info| (id, info)));
            return Err(MembershipError::NotLeader { leader });
        }
        let me = self.id();
        let voters: Vec<(NodeId, String)> =
            status.members.iter().filter(|m| m.voter).map(|m| (m.id, m.peer_addr.clone())).collect();
        let Some(target_addr) = voters.iter().find(|(id, _)| *id == target).map(|(_, addr)| addr.clone()) else {
            return Err(MembershipError::Refused(Refusal::NotAVoter));
        };
        let others: Vec<(NodeId, String)> = voters.into_iter().filter(|(id, _)| *id != target && *id != me).collect();
        let client = self.peer_client();
        let call = |id: NodeId, addr: String, path: &'static str, body: Vec<u8>| async move {
            client.post(id, &addr, path, body, PEER_CALL_TIMEOUT).await.is_ok()
        };
        let hold = |ms: u64| {
            self.hold_elections(Duration::from_millis(ms));
            let body = codec::encode(&ms).expect("a number always encodes");
            futures::future::join_all(
                others.iter().map(|(id, addr)| call(*id, addr.clone(), paths::HOLD_ELECTIONS, body.clone())),
            )
        };
        let elect_target = || call(target, target_addr.clone(), paths::ELECT, Vec::new());
        let limit = 3 * self.election_timeout_max();
        tracing::info!(target, "transferring leadership");
        let started = Instant::now();
        hold(limit.as_millis() as u64).await;
        let moved = async {
            // No new entries (client batches or compactions) from here on, and the ones in flight
            // appended: otherwise one could land after the target caught up, and the leader, with
            // the longer log, would refuse it its vote.
            if !self.pause_proposals(limit).await {
                return false;
            }
            // The target must hold every entry this leader has before it stands.
            loop {
                let now = self.status();
                let matched = now.members.iter().find(|m| m.id == target).and_then(|m| m.matched_index);
                if matched.is_some() && matched == now.last_log_index {
                    break;
                }
                if started.elapsed() > limit / 2 {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !elect_target().await {
                return false;
            }
            // Voters that still hear from this leader refuse the target's first round (leader
            // lease), but this node steps down when it sees the target's term. From then on its
            // vote is no longer a leader's: another round by the target wins it at once, instead
            // of after the target's own election timeout.
            let mut stood_again: Option<Instant> = None;
            while started.elapsed() < limit {
                if self.status().leader_id == Some(target) {
                    return true;
                }
                if !self.leadership().this_node_leads
                    && stood_again.is_none_or(|at| at.elapsed() >= Duration::from_millis(250))
                {
                    stood_again = Some(Instant::now());
                    elect_target().await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
        .await;
        self.pause_proposals(Duration::ZERO).await;
        hold(0).await;
        let took_ms = started.elapsed().as_millis() as u64;
        if moved {
            tracing::info!(target, took_ms, "leadership transferred");
            Ok(Changed::Transferred { took_ms })
        } else {
            tracing::warn!(target, took_ms, "leadership transfer did not complete");
            Err(MembershipError::Failed(format!("node {target} did not take over within {limit:?}")))
        }
    }

    /// Registers the peer listener's routes: Raft RPC, and the changes other nodes forward.
    pub fn configure_peer(&self, cfg: &mut web::ServiceConfig) {
        self.peer_service().configure(cfg);
        cfg.app_data(web::Data::new(self.clone())).route(paths::CHANGE, web::post().to(forwarded_change::<V>));
    }
}

/// The leader side of a forwarded change (one hop: a node that does not lead says so).
async fn forwarded_change<V: StoreValue>(
    svc: web::Data<PeerService>,
    node: web::Data<ClusterNode<V>>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    match svc.decode::<Change>(&req, &body) {
        Ok(change) => encoded(&node.change_here(change).await),
        Err(response) => response,
    }
}
