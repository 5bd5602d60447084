//! What a request says about its client: the device fingerprint and the network prefix, and
//! the bearer token it authenticates with.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;
use tessera_actors::Record;
use tessera_actors::domain::{AccessVerdict, DeviceHash, FamilyId, IpPrefix, Millis, UserId};
use tessera_actors::record::keys;

use crate::error::ApiError;
use crate::http::AppState;
use crate::tokens::AccessClaims;

/// Device and network of the caller.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    pub device: DeviceHash,
    pub ip: Option<IpPrefix>,
}

/// Longest header value that goes into the device hash; longer values are cut (the hash only
/// needs to tell devices apart, not to store what they sent).
const MAX_DEVICE_HEADER: usize = 512;

impl ClientInfo {
    pub fn of(req: &HttpRequest) -> ClientInfo {
        let agent = req.headers().get(header::USER_AGENT).map(|v| v.as_bytes()).unwrap_or_default();
        let agent = &agent[..agent.len().min(MAX_DEVICE_HEADER)];
        ClientInfo { device: DeviceHash::of([agent]), ip: req.peer_addr().map(|a| IpPrefix::from(a.ip())) }
    }
}

/// A request whose bearer token verified and whose session is live.
pub struct Authenticated {
    pub claims: Arc<AccessClaims>,
    pub user: UserId,
    pub family: FamilyId,
}

/// The token in `Authorization: Bearer …`, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Verifies the bearer token, then checks the local replica: the family exists, belongs to
/// the token's subject, is not revoked and knows the token's generation, and the identity is
/// not disabled.
pub fn authenticate(req: &HttpRequest, state: &AppState, now: Millis) -> Result<Authenticated, ApiError> {
    let token = bearer(req).ok_or(ApiError::InvalidToken("a bearer access token is required"))?;
    let claims = state.tokens.verify(token, now)?;
    let (Some(user), Some(family)) = (claims.user(), claims.family()) else {
        return Err(ApiError::InvalidToken("the access token is invalid"));
    };
    let revoked = ApiError::InvalidToken("the session has ended");
    match state.node.get(&keys::family(family)).map_err(ApiError::internal)? {
        Some(stored) => match stored.value {
            Record::Family(f) if f.user == user => match f.access(claims.generation(), now) {
                AccessVerdict::Allowed => {}
                AccessVerdict::Revoked | AccessVerdict::UnknownGeneration | AccessVerdict::Expired => {
                    return Err(revoked);
                }
            },
            _ => return Err(revoked),
        },
        None => return Err(revoked),
    }
    match state.node.get(&keys::user(user)).map_err(ApiError::internal)? {
        Some(stored) => match stored.value {
            Record::Identity(identity) if identity.is_active() => {}
            _ => return Err(revoked),
        },
        None => return Err(revoked),
    }
    Ok(Authenticated { claims, user, family })
}
