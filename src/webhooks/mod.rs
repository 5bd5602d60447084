//! Webhooks: every audit event an endpoint asks for, `POST`ed to it per the Standard Webhooks
//! specification (<https://www.standardwebhooks.com/>), by the leader, at least once, in order.
//!
//! A delivery is
//!
//! ```text
//! POST <url>
//! webhook-id: evt_<audit seq>             stable across retries and leaders: receivers dedupe on it
//! webhook-timestamp: <Unix seconds of this attempt>
//! webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>
//! content-type: application/json
//!
//! {"data":{…},"timestamp":"<the event's at, RFC 3339>","type":"<action>"}
//! ```
//!
//! where `key` is the base64 after `whsec_` in the endpoint's secret, and `data` carries ids
//! and reasons only (`seq`, `actor`, `user_id`, `resource_type`, `resource_id`, `changes` without
//! the email, `request_id`): never an address, a user agent or an email.

pub mod dispatcher;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The `webhook-id` of the event at audit `seq`.
pub fn webhook_id(seq: u64) -> String {
    format!("evt_{seq}")
}

/// The `webhook-signature` header for one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The body sent for the stored audit record `record` (its text parsed), at `seq`: no
/// personal data, sealed or not.
pub fn payload(seq: u64, record: &Value) -> Value {
    let mut changes = record.get("changes").cloned().unwrap_or_else(|| json!({}));
    if let Some(changes) = changes.as_object_mut() {
        changes.remove("email");
    }
    let at = record.get("at").and_then(Value::as_u64).unwrap_or(0);
    let timestamp = crate::audit::view::rfc3339(at);
    json!({
        "type": record.get("action").cloned().unwrap_or(Value::Null),
        "timestamp": timestamp,
        "data": {
            "seq": seq,
            "actor": record.get("actor").cloned().unwrap_or(Value::Null),
            "user_id": record.get("user_id").cloned().unwrap_or(Value::Null),
            "resource_type": record.get("resource_type").cloned().unwrap_or(Value::Null),
            "resource_id": record.get("resource_id").cloned().unwrap_or(Value::Null),
            "changes": changes,
            "request_id": record.get("request_id").cloned().unwrap_or(Value::Null),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_specifications_example() {
        // The example in the Standard Webhooks specification.
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_payload_carries_ids_and_reasons_but_no_personal_data() {
        let record = json!({"action": "user.registered", "at": 0, "changes": {"email": "sealed"}, "ip": "sealed",
            "user_agent": "sealed", "user_id": "u", "resource_type": "user", "resource_id": "u",
            "actor": {"type": "user", "id": "u"}, "request_id": "r"});
        let body = payload(3, &record).to_string();
        assert!(!body.contains("sealed") && !body.contains("\"ip\"") && body.contains(r#""type":"user.registered""#));
    }
}
