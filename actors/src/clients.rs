//! Resource-server clients as replicated records: creating one (with an "absent" compare, so
//! an id is used once) and deleting one, each with its audit event in the same write. Reading
//! them (client authentication) is a local read any node makes.

use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::commit::{audited, log};
use crate::domain::{Client, ClientId, Event};
use crate::operation::Operation;
use crate::ports::{Replicator, Write, WriteOutcome};
use crate::protocol::ActorError;
use crate::record::{Record, keys};
use crate::service::Domain;

/// Clients a cluster holds at most: they are services, not users.
pub const MAX_CLIENTS: usize = 1_000;

/// The client `id`, if the replica holds it.
pub fn client(replica: &dyn Replicator, id: &ClientId) -> Result<Option<(u64, Client)>, ActorError> {
    match replica.read(&keys::client(id))? {
        Some((version, Record::Client(client))) => Ok(Some((version, client))),
        Some((_, other)) => Err(ActorError::Corrupt(format!("client/{id} holds {other:?}"))),
        None => Ok(None),
    }
}

/// Every client, in id order.
pub fn clients(replica: &dyn Replicator) -> Result<Vec<Client>, ActorError> {
    replica
        .scan(keys::CLIENT_PREFIX)?
        .into_iter()
        .map(|(key, _, record)| match record {
            Record::Client(client) => Ok(client),
            other => Err(ActorError::Corrupt(format!("{key} holds {other:?}"))),
        })
        .collect()
}

/// Records a new client (its secret already reduced to a digest at the edge).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateClient {
    pub client: Client,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateOutcome {
    Created,
    /// The cluster holds [`MAX_CLIENTS`] already.
    TooMany,
}

impl Operation for CreateClient {
    type Reply = CreateOutcome;

    async fn run(self, domain: &Domain) -> Result<CreateOutcome, ActorError> {
        let cx = domain.context();
        if clients(&*cx.replicator)?.len() >= MAX_CLIENTS {
            return Ok(CreateOutcome::TooMany);
        }
        let now = cx.clock.now();
        let key = keys::client(&self.client.id);
        let events = [Event::ClientCreated { client: self.client.id.to_string() }];
        let write = Write::default().expect(key.clone(), None).put(key, Record::Client(self.client));
        match cx.replicator.write(audited(cx, now, &self.origin, &events, write, None)?).await? {
            WriteOutcome::Committed { .. } => {
                log(&events);
                Ok(CreateOutcome::Created)
            }
            // 128 random bits collided: not in this universe; retrying is the caller's call.
            WriteOutcome::Conflict { .. } => Err(ActorError::Contention),
        }
    }
}

/// Deletes a client: its credentials stop working on every node as the write is applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteClient {
    pub id: ClientId,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
}

impl Operation for DeleteClient {
    type Reply = DeleteOutcome;

    async fn run(self, domain: &Domain) -> Result<DeleteOutcome, ActorError> {
        let cx = domain.context();
        let Some((version, _)) = client(&*cx.replicator, &self.id)? else { return Ok(DeleteOutcome::NotFound) };
        let now = cx.clock.now();
        let key = keys::client(&self.id);
        let events = [Event::ClientDeleted { client: self.id.to_string() }];
        let write = Write::default().expect(key.clone(), Some(version)).delete(key);
        match cx.replicator.write(audited(cx, now, &self.origin, &events, write, None)?).await? {
            WriteOutcome::Committed { .. } => {
                log(&events);
                Ok(DeleteOutcome::Deleted)
            }
            WriteOutcome::Conflict { .. } => Ok(DeleteOutcome::NotFound),
        }
    }
}
