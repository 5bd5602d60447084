//! Where actors live: activation on demand, passivation when idle, and a clean slate whenever
//! leadership changes.
//!
//! An actor is activated from the local replica, but only once this node has confirmed it
//! leads in the current term and its replica holds everything committed before (one
//! read-index round trip per term, shared by all activations). When the term changes, every
//! actor is dropped: the next request reloads from the replica. In-memory state is therefore
//! never older than the leader's own replica at the start of its term, and every write is a
//! compare-and-set anyway, so a stale actor can only fail to write, never overwrite.
//!
//! An actor starts on the arbiter (thread) of the request that activates it: an HTTP worker of
//! this node's edge, or a peer-listener worker for an operation a follower forwarded. A
//! client's keep-alive connection stays on one worker, so its session's messages are usually
//! delivered without crossing threads. A caller outside any arbiter places the actor on one
//! of the registry's own arbiters, chosen by id.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::Mutex;

use crate::address_actor::Address;
use crate::client_actor::ClientAddr;
use crate::context::ActorContext;
use crate::domain::{Email, FamilyId, IpPrefix, UserId};
use crate::family_actor::{self, SessionFamily};
use crate::identity_actor::{self, IdentityActor};
use crate::protocol::ActorError;
use crate::unknown::UnknownLogins;

/// Unknown email addresses tracked at once (each costs a few dozen bytes).
const UNKNOWN_CAPACITY: usize = 100_000;

struct Slot<A: Actor> {
    addr: Addr<A>,
    last_used: Instant,
}

pub struct Registry {
    cx: Arc<ActorContext>,
    arbiters: Vec<ArbiterHandle>,
    families: Mutex<HashMap<FamilyId, Slot<SessionFamily>>>,
    identities: Mutex<HashMap<UserId, Slot<IdentityActor>>>,
    clients: Mutex<HashMap<IpPrefix, Slot<ClientAddr>>>,
    addresses: Mutex<HashMap<Email, Slot<Address>>>,
    unknown: Arc<UnknownLogins>,
    /// The term in which leadership was last confirmed.
    confirmed: Mutex<Option<u64>>,
    /// One confirmation round trip at a time; the others wait for its result.
    confirming: futures::lock::Mutex<()>,
}

/// Active actor counts, for the operator view.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ActorCounts {
    pub identities: usize,
    pub families: usize,
    pub clients: usize,
}

/// The caller's arbiter, else one of `arbiters` chosen by `key`.
fn place<K: Hash>(key: &K, arbiters: &[ArbiterHandle]) -> ArbiterHandle {
    Arbiter::try_current().unwrap_or_else(|| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        arbiters[(hasher.finish() % arbiters.len() as u64) as usize].clone()
    })
}

impl Registry {
    /// `arbiters` must not be empty; they host the actors that callers outside any arbiter
    /// activate.
    pub fn new(cx: Arc<ActorContext>, arbiters: Vec<ArbiterHandle>) -> Registry {
        assert!(!arbiters.is_empty(), "the registry needs at least one arbiter");
        Registry {
            cx,
            arbiters,
            families: Mutex::default(),
            identities: Mutex::default(),
            clients: Mutex::default(),
            addresses: Mutex::default(),
            unknown: Arc::new(UnknownLogins::new(UNKNOWN_CAPACITY)),
            confirmed: Mutex::new(None),
            confirming: futures::lock::Mutex::new(()),
        }
    }

    pub fn context(&self) -> &Arc<ActorContext> {
        &self.cx
    }

    /// Succeeds once this node has confirmed leadership in its current term and still holds
    /// its leader lease; a lapsed lease (a pause, a partition, an overload) is renewed with a
    /// read-index round trip first, which fails if another node has taken over.
    pub async fn ensure_leading(&self) -> Result<(), ActorError> {
        let term = self.cx.replicator.leading_term().ok_or(ActorError::NotLeader)?;
        let current = || *self.confirmed.lock() == Some(term) && self.cx.replicator.holds_lease();
        if current() {
            return Ok(());
        }
        let _one_at_a_time = self.confirming.lock().await;
        if current() {
            return Ok(());
        }
        let confirmed = self.cx.replicator.confirm_leadership().await?;
        let mut held = self.confirmed.lock();
        if *held != Some(confirmed) {
            // A new term: actors load afresh from the replica, which holds every committed write.
            self.drop_all();
            *held = Some(confirmed);
            tracing::info!(term = confirmed, "leadership confirmed; actors will load from the replica");
        }
        Ok(())
    }

    /// Forgets every actor (leadership changed). In-flight messages finish; their writes can
    /// only conflict or be refused.
    pub fn drop_all(&self) {
        self.families.lock().clear();
        self.identities.lock().clear();
        self.clients.lock().clear();
        self.addresses.lock().clear();
        self.unknown.clear();
    }

    /// The actor of `email` as an address: the stand-in for a login without an account, and
    /// where registrations of the address are serialized.
    pub async fn address(&self, email: &Email) -> Result<Addr<Address>, ActorError> {
        self.ensure_leading().await?;
        let (cx, guards, owned) = (Arc::clone(&self.cx), Arc::clone(&self.unknown), email.clone());
        let addr = activate(&self.addresses, email.clone(), &self.arbiters, || {
            Ok(Some(move || Address::new(owned, guards, cx)))
        })?;
        Ok(addr.expect("address actors always activate"))
    }

    /// Called when this node stops leading.
    pub fn leadership_lost(&self) {
        *self.confirmed.lock() = None;
        self.drop_all();
    }

    /// The actor of family `id`, activated from the replica if needed; `None` if no such family.
    pub async fn family(&self, id: FamilyId) -> Result<Option<Addr<SessionFamily>>, ActorError> {
        self.ensure_leading().await?;
        activate(&self.families, id, &self.arbiters, || {
            let cx = Arc::clone(&self.cx);
            Ok(family_actor::load(&self.cx, id)?.map(|stored| move || SessionFamily::new(stored, cx)))
        })
    }

    /// The actor of identity `user`, activated from the replica if needed.
    pub async fn identity(&self, user: UserId) -> Result<Option<Addr<IdentityActor>>, ActorError> {
        self.ensure_leading().await?;
        activate(&self.identities, user, &self.arbiters, || {
            let cx = Arc::clone(&self.cx);
            Ok(identity_actor::load(&self.cx, user)?.map(|account| move || IdentityActor::new(account, cx)))
        })
    }

    /// The actor of client network `prefix` (state starts empty; it lives in memory only).
    pub async fn client(&self, prefix: IpPrefix) -> Result<Addr<ClientAddr>, ActorError> {
        self.ensure_leading().await?;
        let cx = Arc::clone(&self.cx);
        let addr = activate(&self.clients, prefix, &self.arbiters, || Ok(Some(move || ClientAddr::new(cx))))?;
        Ok(addr.expect("client actors always activate"))
    }

    /// Stops actors unused for `idle` (dropping the last address stops an actor once its
    /// mailbox is empty). Client-network actors stay until their longest window has passed,
    /// so passivation never forgives a throttled network early.
    pub fn passivate_idle(&self, idle: Duration) -> usize {
        let now = Instant::now();
        self.addresses.lock().retain(|_, slot| now.duration_since(slot.last_used) < idle);
        let throttle = self.cx.throttle;
        let client_idle = idle.max(throttle.login_failures.window).max(throttle.registrations.window);
        let mut dropped = 0;
        {
            let mut clients = self.clients.lock();
            let before = clients.len();
            clients.retain(|_, slot| now.duration_since(slot.last_used) < client_idle);
            dropped += before - clients.len();
        }
        {
            let mut families = self.families.lock();
            let before = families.len();
            families.retain(|_, slot| now.duration_since(slot.last_used) < idle);
            dropped += before - families.len();
        }
        let mut identities = self.identities.lock();
        let before = identities.len();
        identities.retain(|_, slot| now.duration_since(slot.last_used) < idle);
        dropped + before - identities.len()
    }

    pub fn counts(&self) -> ActorCounts {
        ActorCounts {
            identities: self.identities.lock().len(),
            families: self.families.lock().len(),
            clients: self.clients.lock().len(),
        }
    }
}

/// Returns the live actor for `key`, or starts one from what `load` finds.
fn activate<K, A, F, L>(
    slots: &Mutex<HashMap<K, Slot<A>>>,
    key: K,
    arbiters: &[ArbiterHandle],
    load: L,
) -> Result<Option<Addr<A>>, ActorError>
where
    K: Hash + Eq + Clone,
    A: Actor<Context = Context<A>>,
    F: FnOnce() -> A + Send + 'static,
    L: FnOnce() -> Result<Option<F>, ActorError>,
{
    let mut slots = slots.lock();
    if let Some(slot) = slots.get_mut(&key)
        && slot.addr.connected()
    {
        slot.last_used = Instant::now();
        return Ok(Some(slot.addr.clone()));
    }
    let Some(make) = load()? else { return Ok(None) };
    let addr = A::start_in_arbiter(&place(&key, arbiters), move |_| make());
    slots.insert(key, Slot { addr: addr.clone(), last_used: Instant::now() });
    Ok(Some(addr))
}
