//! The cluster's signing keys and issuer as replicated records: reading them, and the
//! leader's provisioning of whatever [`KeyRecords::plan`] says is missing.
//!
//! Generating a key is cryptography, so it comes through the [`KeyMaker`] port; deciding that
//! one is needed, and writing it so that exactly one wins a race between two leaders (every
//! record is created with an "absent" compare), happens here.
//!
//! [`KeyRecords::plan`]: crate::domain::KeyRecords::plan

use crate::domain::{KeyPlan, KeyRecords, Millis};
use crate::ports::{Replicator, Write, WriteOutcome};
use crate::protocol::ActorError;
use crate::record::{Record, SigningKey, keys};

/// Makes signing keys (implemented at the edge, over ed25519 and the key-encryption key).
pub trait KeyMaker: Send + Sync {
    /// A fresh key, its private half sealed for storage.
    fn generate(&self, now: Millis) -> SigningKey;
}

/// Every key-related record of the local replica.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// Each stored key with the version that wrote it, in kid order.
    pub keys: Vec<(SigningKey, u64)>,
    /// The active kid and the version of the pointer.
    pub active: Option<(String, u64)>,
    /// The cluster's issuer and the version that recorded it.
    pub issuer: Option<(String, u64)>,
}

impl KeySet {
    /// Reads the set from the replica.
    pub fn read(replica: &dyn Replicator) -> Result<KeySet, ActorError> {
        let mut set = KeySet::default();
        for (key, version, record) in replica.scan(keys::SIGNING_KEY_PREFIX)? {
            match record {
                Record::SigningKey(signing) => set.keys.push((signing, version)),
                other => return Err(ActorError::Corrupt(format!("{key} holds {other:?}"))),
            }
        }
        set.active = match replica.read(keys::ACTIVE_SIGNING_KEY)? {
            Some((version, Record::ActiveSigningKey(kid))) => Some((kid, version)),
            Some((_, other)) => return Err(ActorError::Corrupt(format!("the active key pointer holds {other:?}"))),
            None => None,
        };
        set.issuer = match replica.read(keys::ISSUER)? {
            Some((version, Record::Issuer(issuer))) => Some((issuer, version)),
            Some((_, other)) => return Err(ActorError::Corrupt(format!("the issuer record holds {other:?}"))),
            None => None,
        };
        Ok(set)
    }

    /// What the rule looks at.
    pub fn records(&self) -> KeyRecords<'_> {
        KeyRecords {
            active: self.active.as_ref().map(|(kid, _)| kid.as_str()),
            issuer: self.issuer.as_ref().map(|(issuer, _)| issuer.as_str()),
        }
    }
}

/// What provisioning recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// The kid of the key created (and made active).
    pub key: Option<String>,
    pub issuer: Option<String>,
}

/// On the leader: records what the replica lacks, a first signing key and/or the issuer
/// (`this_issuer`, this node's configured or derived one). `None` if nothing was missing, or
/// another leader recorded it first.
pub async fn provision(
    replica: &dyn Replicator,
    maker: &dyn KeyMaker,
    this_issuer: &str,
    now: Millis,
) -> Result<Option<Provisioned>, ActorError> {
    let (first_key, issuer) = match KeySet::read(replica)?.records().plan(this_issuer) {
        KeyPlan::Current => return Ok(None),
        KeyPlan::Provision { first_key, issuer } => (first_key, issuer),
    };
    let mut write = Write::default();
    let mut provisioned = Provisioned::default();
    if first_key {
        let key = maker.generate(now);
        let kid = key.kid.clone();
        write = write
            .expect(keys::ACTIVE_SIGNING_KEY, None)
            .expect(keys::signing_key(&kid), None)
            .put(keys::signing_key(&kid), Record::SigningKey(key))
            .put(keys::ACTIVE_SIGNING_KEY, Record::ActiveSigningKey(kid.clone()));
        provisioned.key = Some(kid);
    }
    if let Some(issuer) = issuer {
        write = write.expect(keys::ISSUER, None).put(keys::ISSUER, Record::Issuer(issuer.clone()));
        provisioned.issuer = Some(issuer);
    }
    match replica.write(write).await? {
        WriteOutcome::Committed { .. } => Ok(Some(provisioned)),
        WriteOutcome::Conflict { .. } => Ok(None),
    }
}
