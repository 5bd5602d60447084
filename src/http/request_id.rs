//! Every request gets an id: the `X-Request-Id` of a trusted proxy (`trusted_proxies`) if it
//! is sane, else a fresh UUID (v4, from the node's entropy, registered as [`RequestIds`]). The
//! id is on the request's tracing span (so on every log line it causes), in the audit record of
//! every event it causes, and echoed in the response. A client that is not a trusted proxy
//! cannot choose the id its events are recorded under.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use tessera_actors::ports::{Entropy, random};
use tracing::Instrument;

use crate::net::Cidr;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, available to handlers through request extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Where generated ids come from, and whose ids are taken (app data of the listener).
pub struct RequestIds {
    pub entropy: Arc<dyn Entropy>,
    pub proxies: Vec<Cidr>,
}

impl RequestIds {
    fn generate(&self) -> String {
        uuid::Builder::from_random_bytes(random(&*self.entropy)).into_uuid().to_string()
    }
}

fn acceptable(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    sane.then(|| text.to_string())
}

pub async fn middleware(
    ids: web::Data<RequestIds>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let from_proxy = req.peer_addr().is_some_and(|peer| ids.proxies.iter().any(|cidr| cidr.contains(peer.ip())));
    let given = from_proxy.then(|| req.headers().get(&HEADER).and_then(acceptable)).flatten();
    let id = given.unwrap_or_else(|| ids.generate());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    // A probe answering 503 is a node saying it is not ready (starting, out of touch with the
    // leader): expected, and repeated every few seconds by every load balancer.
    let probe = matches!(req.path(), "/readyz" | "/healthz");
    let started = std::time::Instant::now();
    let mut response = next.call(req).instrument(span.clone()).await?;
    let status = response.status();
    span.in_scope(|| {
        if status.is_server_error() && !probe {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "request failed"
            );
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_echoed() {
        assert_eq!(acceptable(&HeaderValue::from_static("abc-123_x.y:z")), Some("abc-123_x.y:z".to_string()));
        assert_eq!(acceptable(&HeaderValue::from_static("has space")), None);
        assert_eq!(acceptable(&HeaderValue::from_static("")), None);
        assert_eq!(acceptable(&HeaderValue::from_str(&"a".repeat(129)).unwrap()), None);
    }
}
