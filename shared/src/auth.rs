//! Who is calling. Every RPC except health and reflection carries
//! `authorization: Bearer <JWT>`; the interceptor here checks signature,
//! pinned algorithm, `exp`, `iss`, `aud` and `sub`, and leaves a [`Caller`] in
//! the request's extensions for handlers to authorize against.
//!
//! A token with a `scope` claim is a service token (`sub` is the service's
//! name); any other token is a user token (`sub` is the user id). Tokens are
//! never logged.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::{Code, Request, Status};

/// The documented dev signing key (HS256). Only `--dev` accepts it; it is
/// public, so tokens signed with it prove nothing outside a laptop.
pub const DEV_SIGNING_KEY: &str = "marketplace-dev-signing-key-not-secret";
/// Default `iss` expected in tokens.
pub const DEFAULT_ISSUER: &str = "marketplace-auth";
/// Default `aud` expected in tokens.
pub const DEFAULT_AUDIENCE: &str = "marketplace-api";
const ERROR_DOMAIN: &str = "auth.marketplace";

/// Scopes service tokens carry.
pub mod scope {
    pub const CONTRACTS_WRITE: &str = "contracts:write";
    pub const CONTRACTS_READ: &str = "contracts:read";
    pub const PAYMENTS_WRITE: &str = "payments:write";
    pub const EVENTS_READ: &str = "events:read";
    pub const JSS_READ: &str = "jss:read";
    pub const ADMIN: &str = "admin";
}

/// The authenticated caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in person, acting as client, freelancer or agency by membership.
    User { id: String },
    /// A platform service (or support tooling) acting through scopes.
    Service { name: String, scopes: Vec<String> },
}

impl Caller {
    /// The user id, for user tokens.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::User { id } => Some(id),
            Caller::Service { .. } => None,
        }
    }

    /// The token's subject: the user id, or the service's name.
    pub fn subject(&self) -> &str {
        match self {
            Caller::User { id } => id,
            Caller::Service { name, .. } => name,
        }
    }

    /// Whether a service token carries `scope`. Users have no scopes.
    pub fn has_scope(&self, scope: &str) -> bool {
        matches!(self, Caller::Service { scopes, .. } if scopes.iter().any(|s| s == scope))
    }

    /// A stable key for what this caller did (idempotency keys are per caller).
    pub fn key(&self) -> String {
        match self {
            Caller::User { id } => format!("user:{id}"),
            Caller::Service { name, .. } => format!("service:{name}"),
        }
    }

    /// The caller of a request, as left by the interceptor.
    #[allow(clippy::result_large_err)]
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthenticated("MISSING_TOKEN", "missing bearer token"))
    }
}

/// The claims this platform's tokens carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    /// Space-separated scopes; present only on service tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// How tokens are checked. Build one with [`AuthArgs::verifier`].
#[derive(Clone)]
pub struct Verifier {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
    cache: Option<Arc<TokenCache>>,
}

/// Tokens this process verified, so a caller's next call with the same
/// token skips the signature check (an RS256 verification costs more than
/// the rest of a read). Keyed by the token's SHA-256, so no token is kept;
/// an entry is served only before the token's `exp`, and the cache holds a
/// bounded number of entries. Rejected tokens are never cached.
pub struct TokenCache {
    entries: quick_cache::sync::Cache<[u8; 32], (Caller, u64)>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    /// The caller of a token verified before, if it has not expired at `now`
    /// (seconds since the epoch).
    pub fn get(&self, token: &str, now: u64) -> Option<Caller> {
        match self.entries.get(&Self::key(token)) {
            Some((caller, exp)) if now < exp => Some(caller),
            Some(_) => {
                self.entries.remove(&Self::key(token));
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token's caller until its `exp`.
    pub fn put(&self, token: &str, caller: Caller, exp: u64) {
        self.entries.insert(Self::key(token), (caller, exp));
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

/// Why the service cannot check tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "no JWT key configured: pass --jwt-key-file (or JWT_KEY_FILE), or --dev for the public dev key"
    )]
    NoKey,
    #[error("cannot read the JWT key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the JWT key file {path} is not a valid key for {algorithm:?}")]
    BadKey {
        path: String,
        algorithm: Algorithm,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// Token settings, flattened into each service's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Development mode: accept tokens signed with the public dev key (see `mint-token`).
    #[arg(long, env = "DEV_MODE", default_value_t = false)]
    pub dev: bool,
    /// Expected `iss` claim.
    #[arg(long, env = "JWT_ISSUER", default_value = DEFAULT_ISSUER)]
    pub jwt_issuer: String,
    /// Expected `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// The one signing algorithm accepted: RS256, ES256, EdDSA or HS256.
    #[arg(long, env = "JWT_ALGORITHM", default_value = "RS256", value_parser = parse_algorithm)]
    pub jwt_algorithm: Algorithm,
    /// PEM public key (or, for HS256, the shared secret) that signs tokens.
    #[arg(long, env = "JWT_KEY_FILE")]
    pub jwt_key_file: Option<String>,
    /// Verified tokens remembered (by hash, until their `exp`) so repeat
    /// calls skip the signature check; 0 turns the cache off.
    #[arg(long, env = "JWT_CACHE_SIZE", default_value_t = 10_000)]
    pub jwt_cache_size: usize,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    match s {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        "HS256" => Ok(Algorithm::HS256),
        other => Err(format!("unsupported JWT algorithm {other}")),
    }
}

impl AuthArgs {
    /// Settings for tests and dev runs: the dev key, default issuer and audience.
    pub fn dev() -> Self {
        Self {
            dev: true,
            jwt_issuer: DEFAULT_ISSUER.into(),
            jwt_audience: DEFAULT_AUDIENCE.into(),
            jwt_algorithm: Algorithm::RS256,
            jwt_key_file: None,
            jwt_cache_size: 10_000,
        }
    }

    /// The token verifier these settings describe. Without a key file and
    /// without `--dev` there is none: the service must refuse to start.
    pub fn verifier(&self) -> Result<Verifier, AuthConfigError> {
        let (algorithm, key) = match &self.jwt_key_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| AuthConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let bad = |source| AuthConfigError::BadKey {
                    path: path.clone(),
                    algorithm: self.jwt_algorithm,
                    source,
                };
                let key = match self.jwt_algorithm {
                    Algorithm::HS256 => Ok(DecodingKey::from_secret(trim_ascii(&bytes))),
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&bytes),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&bytes),
                    _ => DecodingKey::from_rsa_pem(&bytes),
                }
                .map_err(bad)?;
                (self.jwt_algorithm, key)
            }
            None if self.dev => {
                tracing::warn!(
                    "dev mode: accepting tokens signed with the public dev key; never use --dev in production"
                );
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(DEV_SIGNING_KEY.as_bytes()),
                )
            }
            None => return Err(AuthConfigError::NoKey),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.jwt_issuer]);
        validation.set_audience(&[&self.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Verifier {
            key: Arc::new(key),
            validation: Arc::new(validation),
            cache: (self.jwt_cache_size > 0)
                .then(|| Arc::new(TokenCache::new(self.jwt_cache_size))),
        })
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

impl Verifier {
    /// The caller a bearer token stands for.
    #[allow(clippy::result_large_err)]
    pub fn verify(&self, token: &str) -> Result<Caller, Status> {
        if let Some(cache) = &self.cache
            && let Some(caller) = cache.get(token, unix_now())
        {
            return Ok(caller);
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                // The token itself is never logged; the kind of failure is enough.
                tracing::debug!(error = %err, "rejected bearer token");
                match err.kind() {
                    ErrorKind::ExpiredSignature => {
                        unauthenticated("TOKEN_EXPIRED", "token expired")
                    }
                    _ => unauthenticated("INVALID_TOKEN", "invalid bearer token"),
                }
            })?;
        let claims = data.claims;
        if crate::validate::token(&claims.sub).is_err() {
            return Err(unauthenticated("INVALID_TOKEN", "invalid bearer token"));
        }
        let caller = match claims.scope {
            Some(scope) => Caller::Service {
                name: claims.sub,
                scopes: scope.split_whitespace().map(str::to_owned).collect(),
            },
            None => Caller::User { id: claims.sub },
        };
        if let Some(cache) = &self.cache {
            cache.put(token, caller.clone(), claims.exp);
        }
        Ok(caller)
    }

    /// A tonic interceptor that authenticates every call it guards.
    pub fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static + use<>
    {
        let verifier = self.clone();
        move |mut request: Request<()>| {
            let header = request
                .metadata()
                .get("authorization")
                .ok_or_else(|| unauthenticated("MISSING_TOKEN", "missing bearer token"))?;
            let token = header
                .to_str()
                .ok()
                .and_then(|h| {
                    h.strip_prefix("Bearer ")
                        .or_else(|| h.strip_prefix("bearer "))
                })
                .ok_or_else(|| {
                    unauthenticated("INVALID_TOKEN", "authorization must be 'Bearer <token>'")
                })?;
            let caller = verifier.verify(token.trim())?;
            request.extensions_mut().insert(caller);
            Ok(request)
        }
    }
}

fn unauthenticated(reason: &str, message: &str) -> Status {
    crate::status::with_reason(Code::Unauthenticated, ERROR_DOMAIN, reason, message)
}

/// Runs one RPC's handler for the caller the interceptor authenticated,
/// mapping its error to a status in the one place the service defines.
pub async fn handle<Q, R, E, Fut>(
    request: Request<Q>,
    handler: impl FnOnce(Caller, Q) -> Fut,
) -> Result<tonic::Response<R>, Status>
where
    Fut: std::future::Future<Output = Result<R, E>>,
    Status: From<E>,
{
    handle_within(request, |caller, message, _| handler(caller, message)).await
}

/// [`handle`], also handing the handler what is left of the caller's
/// deadline (`grpc-timeout`), for the calls it makes on the caller's behalf.
pub async fn handle_within<Q, R, E, Fut>(
    request: Request<Q>,
    handler: impl FnOnce(Caller, Q, Option<std::time::Duration>) -> Fut,
) -> Result<tonic::Response<R>, Status>
where
    Fut: std::future::Future<Output = Result<R, E>>,
    Status: From<E>,
{
    let caller = Caller::of(&request)?;
    let deadline = crate::deadline::remaining(request.metadata());
    let answer = handler(caller, request.into_inner(), deadline).await;
    answer.map(tonic::Response::new).map_err(Status::from)
}

/// PERMISSION_DENIED for a caller that may not do this. For objects the
/// message never reveals whether the object exists.
pub fn permission_denied(message: impl Into<String>) -> Status {
    crate::status::permission_denied(ERROR_DOMAIN, message)
}

/// What to put in a token minted for the dev key.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub sub: String,
    /// Empty for a user token.
    pub scopes: Vec<String>,
    pub ttl: chrono::Duration,
    pub issuer: String,
    pub audience: String,
}

impl TokenSpec {
    /// A user token with default issuer and audience, valid for a day.
    pub fn user(sub: &str) -> Self {
        Self {
            sub: sub.into(),
            scopes: Vec::new(),
            ttl: chrono::Duration::hours(24),
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
        }
    }

    /// A service token with these scopes.
    pub fn service(name: &str, scopes: &[&str]) -> Self {
        Self {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::user(name)
        }
    }
}

/// Signs a token with an HS256 secret (the dev key, or a test's own key).
pub fn mint(spec: &TokenSpec, secret: &[u8]) -> Result<String, jsonwebtoken::errors::Error> {
    mint_with(spec, Algorithm::HS256, &EncodingKey::from_secret(secret))
}

/// Signs a token with any algorithm's key (the load tool's RS256 key, say).
pub fn mint_with(
    spec: &TokenSpec,
    algorithm: Algorithm,
    key: &EncodingKey,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: spec.sub.clone(),
        iss: spec.issuer.clone(),
        aud: spec.audience.clone(),
        iat: now.max(0) as u64,
        exp: (now + spec.ttl.num_seconds()).max(0) as u64,
        scope: (!spec.scopes.is_empty()).then(|| spec.scopes.join(" ")),
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key)
}

/// Signs a token with the public dev key.
pub fn mint_dev(spec: &TokenSpec) -> Result<String, jsonwebtoken::errors::Error> {
    mint(spec, DEV_SIGNING_KEY.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        AuthArgs::dev().verifier().expect("dev verifier")
    }

    #[test]
    fn the_token_cache_serves_a_caller_only_before_the_tokens_exp() {
        let cache = TokenCache::new(10);
        let caller = Caller::User { id: "alice".into() };
        cache.put("token", caller.clone(), 1_000);
        assert_eq!(cache.get("token", 999), Some(caller));
        assert_eq!(cache.get("token", 1_000), None, "not at exp");
        assert_eq!(cache.get("token", 999), None, "an expired entry is dropped");
        assert_eq!(cache.get("another", 0), None);
    }

    #[test]
    fn verified_tokens_are_remembered_and_rejected_ones_are_not() {
        let v = verifier();
        let cache = v.cache.clone().expect("cache on by default");
        let token = mint_dev(&TokenSpec::user("alice")).expect("mint");
        assert_eq!(cache.get(&token, unix_now()), None);
        v.verify(&token).expect("valid");
        assert_eq!(
            cache.get(&token, unix_now()),
            Some(Caller::User { id: "alice".into() })
        );
        let forged = format!("{token}x");
        assert!(v.verify(&forged).is_err());
        assert_eq!(cache.get(&forged, unix_now()), None);
        let off = AuthArgs {
            jwt_cache_size: 0,
            ..AuthArgs::dev()
        };
        assert!(off.verifier().expect("verifier").cache.is_none());
    }

    #[test]
    fn user_and_service_tokens_become_callers() {
        let v = verifier();
        let user = mint_dev(&TokenSpec::user("alice")).expect("mint");
        assert_eq!(
            v.verify(&user).expect("valid"),
            Caller::User { id: "alice".into() }
        );
        let svc = mint_dev(&TokenSpec::service("billing", &["payments:write"])).expect("mint");
        let caller = v.verify(&svc).expect("valid");
        assert!(caller.has_scope("payments:write"));
        assert!(!caller.has_scope("admin"));
    }

    #[test]
    fn bad_tokens_are_unauthenticated() {
        let v = verifier();
        let expired = TokenSpec {
            ttl: chrono::Duration::hours(-1),
            ..TokenSpec::user("alice")
        };
        let wrong_aud = TokenSpec {
            audience: "other".into(),
            ..TokenSpec::user("alice")
        };
        let wrong_iss = TokenSpec {
            issuer: "other".into(),
            ..TokenSpec::user("alice")
        };
        for token in [
            mint_dev(&expired).expect("mint"),
            mint_dev(&wrong_aud).expect("mint"),
            mint_dev(&wrong_iss).expect("mint"),
            mint(&TokenSpec::user("alice"), b"another key").expect("mint"),
            "not-a-jwt".to_owned(),
        ] {
            let err = v.verify(&token).expect_err("must be rejected");
            assert_eq!(err.code(), Code::Unauthenticated);
        }
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = chrono::Utc::now().timestamp() + 3600;
        let body = b64.encode(format!(
            r#"{{"sub":"alice","iss":"{DEFAULT_ISSUER}","aud":"{DEFAULT_AUDIENCE}","exp":{exp},"iat":0}}"#
        ));
        let token = format!("{header}.{body}.");
        assert_eq!(
            verifier().verify(&token).expect_err("none").code(),
            Code::Unauthenticated
        );
    }

    #[test]
    fn without_a_key_or_dev_mode_there_is_no_verifier() {
        let args = AuthArgs {
            dev: false,
            ..AuthArgs::dev()
        };
        assert!(matches!(args.verifier(), Err(AuthConfigError::NoKey)));
    }
}
