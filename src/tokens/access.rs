//! Access tokens: EdDSA JWTs with `typ: at+jwt` (RFC 9068), minted on any node from the
//! replicated signing key, verified on any node.
//!
//! Verification pins everything: the algorithm (EdDSA only, see `provider`), the type, a
//! known `kid`, the exact issuer and audience, and every claim is required. A token that
//! passes is cached by its SHA-256 until its `exp`, so a hot token costs one hash and one map
//! lookup instead of a signature check; revocation is not cached (the caller checks the family
//! and identity in the replica on every request).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation, decode, decode_header, encode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_actors::domain::{Amr, FamilyId, Generation, Millis, UserId};
use tessera_actors::ports::Replicator;
use tessera_actors::protocol::SessionGrant;
use utoipa::ToSchema;

use super::keyring::{KeyRing, Keys};

pub const TYP: &str = "at+jwt";
/// Longer is not a token we issued; refuse before parsing.
const MAX_TOKEN_LEN: usize = 4096;
const MAX_KID_LEN: usize = 64;

/// The claims of every access token; all are required on verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session (family) id.
    pub sid: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    pub auth_time: u64,
    pub amr: Vec<String>,
    /// `aal1` (one factor) or `aal2` (a password and a second factor). Absent from tokens of
    /// versions before MFA, which were all `aal1`.
    #[serde(default)]
    pub acr: String,
    /// The refresh generation this token was issued with.
    #[serde(rename = "gen")]
    pub generation: u64,
}

impl AccessClaims {
    pub fn user(&self) -> Option<UserId> {
        UserId::parse(&self.sub)
    }

    pub fn family(&self) -> Option<FamilyId> {
        FamilyId::parse(&self.sid)
    }

    pub fn generation(&self) -> Generation {
        Generation(self.generation)
    }

    /// The methods in `amr`, as the domain names them.
    pub fn methods(&self) -> Amr {
        Amr::from_names(self.amr.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("invalid access token: {0}")]
    Invalid(&'static str),
    #[error("access token expired")]
    Expired,
    #[error("no signing key is available yet")]
    NoSigningKey,
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// A token whose signature and claims verified, with its subject and session parsed.
#[derive(Debug)]
pub struct Verified {
    pub claims: AccessClaims,
    pub user: UserId,
    pub family: FamilyId,
    /// The key that signed it: the token stands only while that key is published.
    pub kid: String,
    /// The key ring's generation it was verified under.
    pub generation: u64,
}

/// Verified tokens by SHA-256 of the token. Sharded; a full shard is simply emptied.
struct VerifiedCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Arc<Verified>>>>,
    per_shard: usize,
}

const SHARDS: usize = 16;

impl VerifiedCache {
    fn new(entries: usize) -> VerifiedCache {
        VerifiedCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (entries / SHARDS).max(1),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], Arc<Verified>>> {
        &self.shards[key[0] as usize % SHARDS]
    }

    fn get(&self, key: &[u8; 32], now_secs: u64) -> Option<Arc<Verified>> {
        let mut shard = self.shard(key).lock();
        match shard.get(key) {
            Some(verified) if verified.claims.exp > now_secs => Some(Arc::clone(verified)),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: [u8; 32], verified: Arc<Verified>) {
        let mut shard = self.shard(&key).lock();
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(key, verified);
    }
}

/// Where `iss` comes from: the configured issuer (which must be the same on every node), else
/// the one recorded in the cluster when it was initialised, else (before this replica has it)
/// this node's own public URL.
pub struct Issuer {
    pub configured: Option<String>,
    pub derived: String,
}

pub struct AccessTokens {
    keyring: Arc<KeyRing>,
    /// The local replica, to pick up keys created moments ago.
    replica: Arc<dyn Replicator>,
    issuer: Issuer,
    audience: String,
    ttl: Duration,
    validation: Validation,
    cache: VerifiedCache,
}

impl AccessTokens {
    pub fn new(
        keyring: Arc<KeyRing>,
        replica: Arc<dyn Replicator>,
        issuer: Issuer,
        audience: String,
        ttl: Duration,
        leeway: Duration,
        cache_entries: usize,
    ) -> AccessTokens {
        // `iss` is compared after decoding, with the issuer current at that moment.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        AccessTokens { keyring, replica, issuer, audience, ttl, validation, cache: VerifiedCache::new(cache_entries) }
    }

    pub fn issuer(&self) -> String {
        self.with_issuer(str::to_string)
    }

    fn with_issuer<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match &self.issuer.configured {
            Some(configured) => f(configured),
            None => f(self.keyring.current().issuer.as_deref().unwrap_or(&self.issuer.derived)),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn keyring(&self) -> &KeyRing {
        &self.keyring
    }

    /// The published keys as the local replica holds them now (the JWK Set).
    pub fn published_keys(&self) -> Arc<Keys> {
        self.keyring.fresh(&*self.replica)
    }

    /// Signs an access token for `grant` with the active key.
    pub fn mint(&self, grant: &SessionGrant, now: Millis, jti: [u8; 16]) -> Result<String, TokenError> {
        let keys = self.keyring.fresh(&*self.replica);
        let Some(active) = keys.active.clone() else { return Err(TokenError::NoSigningKey) };
        let iat = now.as_secs();
        let claims = AccessClaims {
            iss: self.issuer(),
            aud: self.audience.clone(),
            sub: grant.user.to_string(),
            sid: grant.family.to_string(),
            iat,
            nbf: iat,
            exp: iat + self.ttl.as_secs(),
            jti: URL_SAFE_NO_PAD.encode(jti),
            auth_time: grant.auth_time.as_secs(),
            amr: grant.amr.names().into_iter().map(String::from).collect(),
            acr: grant.amr.acr().to_string(),
            generation: grant.generation.0,
        };
        let header =
            Header { typ: Some(TYP.to_string()), kid: Some(active.kid.clone()), ..Header::new(Algorithm::EdDSA) };
        encode(&header, &claims, &active.encoding).map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Checks signature and claims (not revocation). Cached per token until `exp`.
    pub fn verify(&self, token: &str, now: Millis) -> Result<Arc<Verified>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid("too long"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // The ring is current with the replica (an emergency rotation applied here a moment
        // ago has already removed the old key from it), so a verification cached under an
        // older ring stands only if its key is still there.
        let keys = self.keyring.fresh(&*self.replica);
        if let Some(verified) = self.cache.get(&digest, now.as_secs()) {
            let published = verified.generation == keys.generation || keys.verifying.contains_key(&verified.kid);
            return if published { Ok(verified) } else { Err(TokenError::Invalid("revoked key")) };
        }
        let header = decode_header(token).map_err(|_| TokenError::Invalid("malformed header"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid("algorithm"));
        }
        if header.typ.as_deref() != Some(TYP) {
            return Err(TokenError::Invalid("type"));
        }
        let kid = header.kid.filter(|k| k.len() <= MAX_KID_LEN).ok_or(TokenError::Invalid("kid"))?;
        // A kid the current ring lacks is no key of this cluster: the ring follows every
        // write to the key records as this replica applies it.
        let key = keys.verifying.get(&kid).cloned().ok_or(TokenError::Invalid("unknown kid"))?;
        let data = decode::<AccessClaims>(token, &key, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid("signature or claims"),
        })?;
        let claims = data.claims;
        if !self.with_issuer(|issuer| claims.iss == issuer) {
            return Err(TokenError::Invalid("issuer"));
        }
        let (Some(user), Some(family)) = (claims.user(), claims.family()) else {
            return Err(TokenError::Invalid("sub or sid"));
        };
        let verified = Arc::new(Verified { claims, user, family, kid, generation: keys.generation });
        self.cache.put(digest, Arc::clone(&verified));
        Ok(verified)
    }
}
