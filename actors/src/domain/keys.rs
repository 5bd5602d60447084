//! The life of the cluster's signing keys, decided over the replicated key records and `now`.
//!
//! ```text
//!            publish                 activate                  retention over
//!   (none) ──────────► next ─────────────────► active ──────► retired ──────────► removed
//!                      published,     at most   signs;        published,
//!                      signs nothing  one       exactly one   verifies, signs nothing
//!                                                 │
//!                                                 └─ emergency rotation ─────────► removed
//! ```
//!
//! Which key is in which state is held by two pointers, `signing/active` and `signing/next`:
//! a key is active exactly when the active pointer names it, so "exactly one active key at any
//! commit" holds by construction, and every transition is one compare-and-set write over the
//! pointers and the keys it touches (two leaders racing, or a scheduled rotation racing an
//! operator's, cannot both win). Every node reads the same records, so every node agrees at
//! every moment on which key signs and which keys verify.
//!
//! The schedule: the active key is replaced `rotate_every` after it became active; its
//! successor is published as `next` at least `prepublish` before that (at least twice the
//! JWKS cache age, so every verifier's cached key set holds it before it signs anything); a
//! retired key stays published for `retain_retired` (the longest access-token lifetime plus
//! leeway), so every token it signed verifies until it expires, and is then removed.
//!
//! Generating a key is cryptography and lives at the edge; deciding that one is needed, and
//! which records a transition touches, is here.

use std::time::Duration;

use super::time::Millis;

/// How often keys rotate and how long the states around activation last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    /// How long a key signs before its successor takes over.
    pub rotate_every: Duration,
    /// How long a successor is published before it may sign.
    pub prepublish: Duration,
    /// How long a retired key stays published (the longest access token's lifetime plus leeway).
    pub retain_retired: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            rotate_every: Duration::from_secs(90 * 86_400),
            prepublish: Duration::from_secs(900),
            retain_retired: Duration::from_secs(900 + 60),
        }
    }
}

/// One stored key, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyView<'a> {
    pub kid: &'a str,
    /// When it was published.
    pub created_at: Millis,
    /// When it began to sign (`None`: it never has).
    pub activated_at: Option<Millis>,
    /// When it stopped signing.
    pub retired_at: Option<Millis>,
}

impl KeyView<'_> {
    /// Since when the key signs, if it is the active one (keys of versions before the
    /// lifecycle were active from their creation).
    pub fn active_since(&self) -> Millis {
        self.activated_at.unwrap_or(self.created_at)
    }

    /// Since when the key has not signed, if it is retired (a key no pointer names and that
    /// never recorded its retirement is treated as retired when it was last known to sign).
    fn retired_since(&self) -> Millis {
        self.retired_at.or(self.activated_at).unwrap_or(self.created_at)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, signs nothing yet.
    Next,
    /// Signs new access tokens.
    Active,
    /// Published so its tokens verify until they expire; signs nothing.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// What the replica holds about signing keys and the issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRecords<'a> {
    /// Every stored key.
    pub keys: Vec<KeyView<'a>>,
    /// The kid new access tokens are signed with, if one is recorded.
    pub active: Option<&'a str>,
    /// The published successor, if there is one.
    pub next: Option<&'a str>,
    /// The cluster's `iss`, recorded once by the leader that first provisions the cluster.
    pub issuer: Option<&'a str>,
}

/// The one transition the leader's housekeeping makes now (it asks again on its next round).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPlan {
    /// Nothing is due.
    Current,
    /// Record what is missing: a first signing key (made active at once: there is nothing to
    /// verify yet, so nothing to pre-publish for) and/or the issuer.
    Provision { first_key: bool, issuer: Option<String> },
    /// Publish a fresh successor as `next`.
    Publish,
    /// Scheduled rotation: `next` signs from now on, `retiring` is retired.
    Activate { next: String, retiring: String },
    /// A retired key whose last token has expired leaves the key set.
    Remove { kid: String },
}

/// An operator's "rotate now" for the key `target` (the one active when they asked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateDecision {
    /// The cluster has no signing key yet.
    NoActiveKey,
    /// `target` no longer signs: a rotation decided meanwhile replaced it. Nothing to do;
    /// `active` is its result.
    AlreadyRotated { active: String },
    /// Activate `successor` at once; `current` is retired, or with `revoke` removed outright.
    Rotate { current: String, successor: Successor, revoke: bool },
}

/// Which key takes over in an immediate rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Successor {
    /// The published `next` key: verifiers' cached key sets already hold it.
    Published(String),
    /// No successor is published: a fresh key (verifiers fetch it on its unknown kid).
    Fresh,
}

/// One key as operators see it: its state and the moments of its life, past and planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub kid: String,
    pub state: KeyState,
    pub published_at: Millis,
    pub activated_at: Option<Millis>,
    pub retired_at: Option<Millis>,
    /// For `next`: when it will begin to sign (if the active key is still due then).
    /// For `active`: when it is due to be replaced.
    /// For `retired`: when it will be removed.
    pub next_transition_at: Option<Millis>,
}

impl<'a> KeyRecords<'a> {
    fn key(&self, kid: &str) -> Option<&KeyView<'a>> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// The state of a stored key.
    pub fn state(&self, kid: &str) -> KeyState {
        if self.active == Some(kid) {
            KeyState::Active
        } else if self.next == Some(kid) {
            KeyState::Next
        } else {
            KeyState::Retired
        }
    }

    /// When the active key is due to be replaced.
    fn rotation_due(&self, active: &KeyView<'_>, policy: &KeyPolicy) -> Millis {
        active.active_since().saturating_add(policy.rotate_every)
    }

    /// When a published successor may begin to sign: once the active key is due and the
    /// successor has been published for `prepublish`.
    fn activation_due(&self, active: &KeyView<'_>, next: &KeyView<'_>, policy: &KeyPolicy) -> Millis {
        self.rotation_due(active, policy).max(next.created_at.saturating_add(policy.prepublish))
    }

    /// What the leader must write now; `this_issuer` is the issuer this node would record.
    pub fn plan(&self, this_issuer: &str, policy: &KeyPolicy, now: Millis) -> KeyPlan {
        let active = self.active.and_then(|kid| self.key(kid));
        let issuer = self.issuer.is_none().then(|| this_issuer.to_string());
        if active.is_none() || issuer.is_some() {
            return KeyPlan::Provision { first_key: active.is_none(), issuer };
        }
        let Some(active) = active else { return KeyPlan::Current };
        let expired = self.keys.iter().find(|key| {
            self.state(key.kid) == KeyState::Retired && key.retired_since().saturating_add(policy.retain_retired) <= now
        });
        if let Some(expired) = expired {
            return KeyPlan::Remove { kid: expired.kid.to_string() };
        }
        match self.next.and_then(|kid| self.key(kid)) {
            Some(next) if self.activation_due(active, next, policy) <= now => {
                KeyPlan::Activate { next: next.kid.to_string(), retiring: active.kid.to_string() }
            }
            Some(_) => KeyPlan::Current,
            None => {
                let publish_due =
                    Millis(self.rotation_due(active, policy).0.saturating_sub(policy.prepublish.as_millis() as u64));
                if publish_due <= now { KeyPlan::Publish } else { KeyPlan::Current }
            }
        }
    }

    /// An immediate rotation of `target`, retiring it (or, with `revoke`, removing it).
    pub fn rotate(&self, target: &str, revoke: bool) -> RotateDecision {
        let Some(active) = self.active else { return RotateDecision::NoActiveKey };
        if active != target {
            return RotateDecision::AlreadyRotated { active: active.to_string() };
        }
        let successor = match self.next.filter(|kid| self.key(kid).is_some()) {
            Some(next) => Successor::Published(next.to_string()),
            None => Successor::Fresh,
        };
        RotateDecision::Rotate { current: active.to_string(), successor, revoke }
    }

    /// Every stored key, active first, then next, then retired (newest first).
    pub fn describe(&self, policy: &KeyPolicy) -> Vec<KeyStatus> {
        let active = self.active.and_then(|kid| self.key(kid));
        let mut statuses: Vec<KeyStatus> = self
            .keys
            .iter()
            .map(|key| {
                let state = self.state(key.kid);
                let next_transition_at = match state {
                    KeyState::Active => Some(self.rotation_due(key, policy)),
                    KeyState::Next => active.map(|active| self.activation_due(active, key, policy)),
                    KeyState::Retired => Some(key.retired_since().saturating_add(policy.retain_retired)),
                };
                KeyStatus {
                    kid: key.kid.to_string(),
                    state,
                    published_at: key.created_at,
                    activated_at: key.activated_at.or((state == KeyState::Active).then_some(key.created_at)),
                    retired_at: key.retired_at,
                    next_transition_at,
                }
            })
            .collect();
        statuses.sort_by_key(|status| {
            let rank = match status.state {
                KeyState::Active => 0,
                KeyState::Next => 1,
                KeyState::Retired => 2,
            };
            (rank, std::cmp::Reverse(status.published_at))
        });
        statuses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://auth.example.com";
    const DAY: u64 = 86_400_000;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            rotate_every: Duration::from_secs(10 * 86_400),
            prepublish: Duration::from_secs(900),
            retain_retired: Duration::from_secs(960),
        }
    }

    fn view(kid: &str, created: u64, activated: Option<u64>, retired: Option<u64>) -> KeyView<'_> {
        KeyView {
            kid,
            created_at: Millis(created),
            activated_at: activated.map(Millis),
            retired_at: retired.map(Millis),
        }
    }

    #[test]
    fn only_what_is_missing_is_provisioned() {
        let p = policy();
        assert_eq!(
            KeyRecords::default().plan(ISSUER, &p, Millis(0)),
            KeyPlan::Provision { first_key: true, issuer: Some(ISSUER.to_string()) }
        );
        let keyed = KeyRecords { keys: vec![view("a", 0, Some(0), None)], active: Some("a"), ..Default::default() };
        assert_eq!(
            keyed.plan(ISSUER, &p, Millis(1)),
            KeyPlan::Provision { first_key: false, issuer: Some(ISSUER.into()) }
        );
        let complete = KeyRecords { issuer: Some("https://other.example.com"), ..keyed.clone() };
        assert_eq!(complete.plan(ISSUER, &p, Millis(1)), KeyPlan::Current, "a recorded issuer is never replaced");
        let dangling = KeyRecords { keys: vec![], ..complete };
        assert_eq!(
            dangling.plan(ISSUER, &p, Millis(1)),
            KeyPlan::Provision { first_key: true, issuer: None },
            "an active pointer to a missing key is no active key"
        );
    }

    /// Walks the whole schedule with the rule alone, minute by minute over 25 days, applying
    /// each plan as the shell would, and checks the properties verifiers rely on.
    #[test]
    fn a_simulated_schedule_prepublishes_every_key_and_retains_every_retired_one() {
        #[derive(Clone)]
        struct Stored {
            kid: String,
            created: u64,
            activated: Option<u64>,
            retired: Option<u64>,
        }
        let p = policy();
        let mut stored: Vec<Stored> = Vec::new();
        let (mut active, mut next): (Option<String>, Option<String>) = (None, None);
        let mut made = 0;
        let mut activations = Vec::new();
        for minute in 0..(25 * 24 * 60) {
            let now = minute * 60_000;
            let records = KeyRecords {
                keys: stored.iter().map(|s| view(&s.kid, s.created, s.activated, s.retired)).collect(),
                active: active.as_deref(),
                next: next.as_deref(),
                issuer: Some(ISSUER),
            };
            let plan = records.plan(ISSUER, &p, Millis(now));
            drop(records);
            match plan {
                KeyPlan::Current => {}
                KeyPlan::Provision { first_key, .. } => {
                    assert!(first_key);
                    made += 1;
                    stored.push(Stored { kid: format!("k{made}"), created: now, activated: Some(now), retired: None });
                    active = Some(format!("k{made}"));
                }
                KeyPlan::Publish => {
                    assert!(next.is_none(), "at most one successor");
                    made += 1;
                    stored.push(Stored { kid: format!("k{made}"), created: now, activated: None, retired: None });
                    next = Some(format!("k{made}"));
                }
                KeyPlan::Activate { next: successor, retiring } => {
                    assert_eq!(Some(&retiring), active.as_ref());
                    let key = stored.iter_mut().find(|s| s.kid == successor).unwrap();
                    assert!(now - key.created >= 900_000, "a successor signs only after its pre-publication");
                    key.activated = Some(now);
                    activations.push(now);
                    stored.iter_mut().find(|s| s.kid == retiring).unwrap().retired = Some(now);
                    active = Some(successor);
                    next = None;
                }
                KeyPlan::Remove { kid } => {
                    let key = stored.iter().find(|s| s.kid == kid).unwrap();
                    assert_ne!(Some(&kid), active.as_ref(), "the active key is never removed");
                    assert_ne!(Some(&kid), next.as_ref(), "a successor is never removed");
                    assert!(now - key.retired.unwrap() >= 960_000, "a retired key outlives its last token");
                    stored.retain(|s| s.kid != kid);
                }
            }
        }
        assert_eq!(activations, vec![10 * DAY, 20 * DAY], "rotation every ten days, on time");
        assert_eq!(stored.len(), 1, "only the active key remains (its successor is due on day 30)");
    }

    #[test]
    fn a_due_rotation_without_a_successor_publishes_one_first() {
        let p = policy();
        let records =
            KeyRecords { keys: vec![view("a", 0, Some(0), None)], active: Some("a"), next: None, issuer: Some(ISSUER) };
        assert_eq!(records.plan(ISSUER, &p, Millis(30 * DAY)), KeyPlan::Publish);
        let published = KeyRecords {
            keys: vec![view("a", 0, Some(0), None), view("b", 30 * DAY, None, None)],
            next: Some("b"),
            ..records
        };
        assert_eq!(
            published.plan(ISSUER, &p, Millis(30 * DAY + 899_999)),
            KeyPlan::Current,
            "not before pre-publication"
        );
        assert_eq!(
            published.plan(ISSUER, &p, Millis(30 * DAY + 900_000)),
            KeyPlan::Activate { next: "b".into(), retiring: "a".into() }
        );
    }

    #[test]
    fn an_immediate_rotation_replaces_only_the_key_it_targets() {
        let records = KeyRecords {
            keys: vec![view("a", 0, Some(0), None), view("b", 5, None, None)],
            active: Some("a"),
            next: Some("b"),
            issuer: Some(ISSUER),
        };
        assert_eq!(
            records.rotate("a", false),
            RotateDecision::Rotate { current: "a".into(), successor: Successor::Published("b".into()), revoke: false }
        );
        assert_eq!(records.rotate("z", true), RotateDecision::AlreadyRotated { active: "a".into() });
        let alone = KeyRecords { next: None, keys: vec![view("a", 0, Some(0), None)], ..records };
        assert_eq!(
            alone.rotate("a", true),
            RotateDecision::Rotate { current: "a".into(), successor: Successor::Fresh, revoke: true }
        );
        assert_eq!(KeyRecords::default().rotate("a", false), RotateDecision::NoActiveKey);
    }

    #[test]
    fn the_description_names_each_state_and_its_next_moment() {
        let p = policy();
        let records = KeyRecords {
            keys: vec![
                view("old", 0, Some(0), Some(DAY)),
                view("cur", 100, Some(DAY), None),
                view("new", 2 * DAY, None, None),
            ],
            active: Some("cur"),
            next: Some("new"),
            issuer: Some(ISSUER),
        };
        let described = records.describe(&p);
        let states: Vec<(&str, KeyState)> = described.iter().map(|s| (s.kid.as_str(), s.state)).collect();
        assert_eq!(states, vec![("cur", KeyState::Active), ("new", KeyState::Next), ("old", KeyState::Retired)]);
        assert_eq!(described[0].next_transition_at, Some(Millis(11 * DAY)));
        assert_eq!(described[1].next_transition_at, Some(Millis(11 * DAY)));
        assert_eq!(described[2].next_transition_at, Some(Millis(DAY + 960_000)));
    }
}
