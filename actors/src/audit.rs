//! What a security event becomes in the audit trail: one JSON text appended to the replicated,
//! hash-chained `audit` stream in the same write as the change it records (so it exists exactly
//! when the change was acknowledged), with personal data sealed.
//!
//! ## The record
//!
//! ```text
//! {"action":"session.revoked","actor":{"id":"<user id>","type":"user"},"at":1764601200000,
//!  "changes":{"reason":"logout"},"ip":"<sealed>","request_id":"…","resource_id":"<session id>",
//!  "resource_type":"session","user_agent":"<sealed>","user_id":"<user id>"}
//! ```
//!
//! Keys sorted, no whitespace, strings escaped minimally: the JSON Canonicalization Scheme
//! (RFC 8785) for the values used here (ASCII keys, strings, integers, booleans, null, objects),
//! so anyone can rebuild the exact text from the stored fields. `docs/audit.md` specifies every
//! field; the stream chains the texts (`hash = SHA-256(prev ‖ seq ‖ text)`, see
//! `tessera_cluster`'s streams).
//!
//! ## Personal data
//!
//! The client's address, its user agent and an email address are sealed with
//! XChaCha20-Poly1305 under the user's own key (`pii/{user}`), or, for an address without an
//! account, under the cluster's. A sealed value is `base64url(nonce ‖ ciphertext)`, with
//! `tessera/audit/v1/<field>/<user id or ->` as associated data. Deleting a user's key erases
//! their data from the trail without changing a byte the chain covers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize, Serializer};

use crate::context::ActorContext;
use crate::domain::{Change, Event, Millis, UserId};
use crate::ports::{Replicator, random};
use crate::protocol::ActorError;
use crate::record::{Record, keys};

/// The stream the audit trail is appended to.
pub const STREAM: &str = "audit";

/// Who acted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// The user the event is about, acting for themselves (logging in, out, refreshing).
    #[default]
    Subject,
    /// An administrator (`id`: which credential: `admin-token` for the configured token).
    Admin { id: String },
    /// Tessera itself (housekeeping).
    System,
    /// A resource-server client (`id`: its client id, or `public` for one without a secret).
    Client { id: String },
}

/// Where a request came from, as the audit trail records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub request_id: String,
    pub ip: Option<IpAddr>,
    pub user_agent: String,
    pub actor: Actor,
}

/// A JSON value whose objects serialize with sorted keys, whatever `serde_json` features the
/// build enables.
enum Json {
    Null,
    Text(String),
    Number(u64),
    Flag(bool),
    Object(BTreeMap<&'static str, Json>),
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_none(),
            Json::Text(text) => serializer.serialize_str(text),
            Json::Number(n) => serializer.serialize_u64(*n),
            Json::Flag(b) => serializer.serialize_bool(*b),
            Json::Object(map) => map.serialize(serializer),
        }
    }
}

fn text_or_null(text: Option<String>) -> Json {
    text.map_or(Json::Null, Json::Text)
}

/// The associated data of a sealed field.
fn aad(field: &str, user: Option<UserId>) -> Vec<u8> {
    let owner = user.map_or_else(|| "-".to_string(), |u| u.to_string());
    format!("tessera/audit/v1/{field}/{owner}").into_bytes()
}

/// Seals `plain` as `field` of `user`'s record under `key`.
pub fn seal(key: &[u8; 32], field: &str, user: Option<UserId>, plain: &str, nonce: [u8; 24]) -> String {
    let sealed = XChaCha20Poly1305::new(key.into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: &aad(field, user) })
        .expect("sealing a short text cannot fail");
    let mut bytes = nonce.to_vec();
    bytes.extend(sealed);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Opens a value sealed by [`seal`]; `None` if it does not open with `key` (erased, or not
/// this field of this user).
pub fn unseal(key: &[u8; 32], field: &str, user: Option<UserId>, sealed: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < 24 {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(24);
    let plain = XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad(field, user) })
        .ok()?;
    String::from_utf8(plain).ok()
}

/// The key that seals `user`'s personal data: theirs while it exists, the cluster's for events
/// without an account. `None`: the user's data has been erased (nothing personal is recorded).
pub fn sealing_key(cx: &ActorContext, user: Option<UserId>) -> Result<Option<[u8; 32]>, ActorError> {
    key_of(&*cx.replicator, &cx.audit.cluster_pii_key, user)
}

/// [`sealing_key`] from the replica itself: the key that seals and opens `user`'s data.
fn key_of(
    replicator: &dyn Replicator,
    cluster_key: &[u8; 32],
    user: Option<UserId>,
) -> Result<Option<[u8; 32]>, ActorError> {
    let Some(user) = user else { return Ok(Some(*cluster_key)) };
    match replicator.read(&keys::pii(user))? {
        Some((_, Record::PiiKey(key))) => Ok(Some(key)),
        Some((_, other)) => Err(ActorError::Corrupt(format!("pii/{user} holds {other:?}"))),
        None => Ok(None),
    }
}

/// The audit record of `event`, decided at `at`, for a request from `origin`, personal data
/// sealed under `key` (`None`: not recorded); see [`sealing_key`].
pub fn record(
    cx: &ActorContext,
    event: &Event,
    at: Millis,
    origin: &Origin,
    key: Option<[u8; 32]>,
) -> Result<String, ActorError> {
    let user = event.user();
    let sealed = |field: &str, plain: Option<String>| -> Json {
        match (key, plain) {
            (Some(key), Some(plain)) => Json::Text(seal(&key, field, user, &plain, random(&*cx.entropy))),
            (None, _) | (_, None) => Json::Null,
        }
    };
    let mut changes: BTreeMap<&'static str, Json> = event
        .changes()
        .into_iter()
        .map(|(name, change)| {
            let value = match change {
                Change::Text(text) => Json::Text(text.to_string()),
                Change::Number(n) => Json::Number(n),
                Change::Flag(b) => Json::Flag(b),
            };
            (name, value)
        })
        .collect();
    if let Some(email) = event.email() {
        changes.insert("email", sealed("email", Some(email.to_string())));
    }
    let actor = match &origin.actor {
        Actor::Subject => [("type", Json::Text("user".into())), ("id", text_or_null(user.map(|u| u.to_string())))],
        Actor::Admin { id } => [("type", Json::Text("admin".into())), ("id", Json::Text(id.clone()))],
        Actor::System => [("type", Json::Text("system".into())), ("id", Json::Null)],
        Actor::Client { id } => [("type", Json::Text("client".into())), ("id", Json::Text(id.clone()))],
    };
    let (resource_type, resource_id) = match (event.resource(), event.session(), user) {
        (Some((kind, id)), _, _) => (kind, Some(id.to_string())),
        (None, Some(session), _) => ("session", Some(session.to_string())),
        (None, None, Some(user)) => ("user", Some(user.to_string())),
        (None, None, None) => ("address", None),
    };
    let fields = BTreeMap::from([
        ("action", Json::Text(event.action().to_string())),
        ("actor", Json::Object(actor.into_iter().collect())),
        ("at", Json::Number(at.0)),
        ("changes", Json::Object(changes)),
        ("ip", sealed("ip", origin.ip.map(|ip| ip.to_string()))),
        ("request_id", text_or_null((!origin.request_id.is_empty()).then(|| origin.request_id.clone()))),
        ("resource_id", text_or_null(resource_id)),
        ("resource_type", Json::Text(resource_type.to_string())),
        ("user_agent", sealed("user_agent", (!origin.user_agent.is_empty()).then(|| origin.user_agent.clone()))),
        ("user_id", text_or_null(user.map(|u| u.to_string()))),
    ]);
    serde_json::to_string(&Json::Object(fields)).map_err(|e| ActorError::Corrupt(format!("audit record: {e}")))
}

/// Opens the sealed fields of a stored `record` in place (the admin view): each becomes its
/// plain text, or `null` where the key is gone. Returns whether the record's personal data has
/// been erased (its user's key no longer exists).
pub fn open(
    replicator: &dyn Replicator,
    cluster_key: &[u8; 32],
    record: &mut serde_json::Value,
) -> Result<bool, ActorError> {
    let user = record.get("user_id").and_then(|u| u.as_str()).and_then(UserId::parse);
    let key = key_of(replicator, cluster_key, user)?;
    let open_field = |slot: Option<&mut serde_json::Value>, field: &str| {
        if let Some(slot) = slot {
            let plain = match (key, slot.as_str()) {
                (Some(key), Some(sealed)) => unseal(&key, field, user, sealed),
                _ => None,
            };
            *slot = plain.map_or(serde_json::Value::Null, serde_json::Value::String);
        }
    };
    open_field(record.get_mut("ip"), "ip");
    open_field(record.get_mut("user_agent"), "user_agent");
    open_field(record.get_mut("changes").and_then(|c| c.get_mut("email")), "email");
    Ok(key.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_field_and_owner() {
        let (key, user) = ([7u8; 32], Some(UserId([1; 16])));
        let sealed = seal(&key, "ip", user, "203.0.113.7", [3; 24]);
        assert!(!sealed.contains("203.0.113.7"));
        assert_eq!(unseal(&key, "ip", user, &sealed).as_deref(), Some("203.0.113.7"));
        assert_eq!(unseal(&[8; 32], "ip", user, &sealed), None, "another key (an erased one)");
        assert_eq!(unseal(&key, "user_agent", user, &sealed), None, "another field");
        assert_eq!(unseal(&key, "ip", Some(UserId([2; 16])), &sealed), None, "another user");
        assert_eq!(unseal(&key, "ip", user, "garbage"), None);
    }

    #[test]
    fn objects_serialize_with_sorted_keys_and_no_whitespace() {
        let json = Json::Object(BTreeMap::from([
            ("b", Json::Number(2)),
            ("a", Json::Object(BTreeMap::from([("y", Json::Null), ("x", Json::Text("é\"\n".into()))]))),
        ]));
        assert_eq!(serde_json::to_string(&json).unwrap(), r#"{"a":{"x":"é\"\n","y":null},"b":2}"#);
    }
}
