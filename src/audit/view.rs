//! An audit entry as the admin query shows it: the stored record's fields, personal data
//! opened where the user's key still exists, `at` as RFC 3339, and the chain fields in hex.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};
use tessera_actors::audit;
use tessera_actors::ports::Replicator;
use tessera_actors::protocol::ActorError;

use super::store::Entry;

/// The event `entry` records, for an administrator.
pub fn event(entry: &Entry, replica: &dyn Replicator, cluster_key: &[u8; 32]) -> Result<Value, ActorError> {
    let mut record: Value = serde_json::from_str(&entry.text)
        .map_err(|e| ActorError::Corrupt(format!("audit seq {} is not JSON: {e}", entry.seq)))?;
    let erased = audit::open(replica, cluster_key, &mut record)?;
    let Value::Object(fields) = record else {
        return Err(ActorError::Corrupt(format!("audit seq {} is not an object", entry.seq)));
    };
    let mut shown = Map::new();
    shown.insert("seq".into(), entry.seq.into());
    for (name, value) in fields {
        let value = match (name.as_str(), value.as_u64()) {
            ("at", Some(ms)) => rfc3339(ms).into(),
            _ => value,
        };
        shown.insert(name, value);
    }
    shown.insert("pii_erased".into(), erased.into());
    shown.insert("prev_hash".into(), hex::encode(entry.prev).into());
    shown.insert("hash".into(), hex::encode(entry.hash).into());
    Ok(Value::Object(shown))
}

/// Unix milliseconds as RFC 3339 with milliseconds, as every admin view and webhook shows times.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `since` and `until` as given: RFC 3339 (`2026-12-01T10:00:00Z`) or Unix milliseconds.
pub fn parse_time(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let at = humantime::parse_rfc3339_weak(text).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}
