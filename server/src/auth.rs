//! HTTP Basic authentication of PHR callers (PHR_API.md §1).
//!
//! The user-id of a Basic credential is either `facility:user` (so the decoded pair reads `F:U:P`, everything
//! after the second colon being the password) or a bare `user`, whose facility then comes from
//! `X-Facility-Id`. Passwords are stored as argon2id PHC strings and verified with argon2's constant-time
//! comparison on a blocking thread. Because argon2id is memory-hard on purpose, verifying on every request
//! would make it the dominant cost of each probe (and a cheap way to exhaust the server); a successful
//! verification is therefore remembered for a short while under an HMAC of the credential with a per-process
//! random key, so the cache holds no password and a lookup reveals nothing about one. An unknown user is
//! checked against a dummy hash so the response time does not tell which user-ids exist.
//!
//! Checks that do run are bounded twice: each passes the [`gate::VerifyGate`] (a fixed number at once, each
//! in reused memory, a bounded queue, 503 beyond it), and a client certificate that keeps failing is refused
//! by the [`throttle::FailureThrottle`] (429) before any check runs. Both answers carry `Retry-After`.

pub mod gate;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher};
use axum::http::{HeaderValue, StatusCode, header};
use base64::Engine as _;
use sqlx::FromRow;

use crate::clock::Clock;
use crate::config::auth::AuthLimits;
use crate::db::Db;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{AuthRefusal, Metrics};
use gate::{QueueFull, VerifyGate};
use throttle::FailureThrottle;

/// How long a verified credential is remembered.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Upper bound on remembered credentials; the cache is cleared when it is reached.
const CACHE_CAPACITY: usize = 4096;
/// The `Retry-After` of a 503 for a full verification queue: a queue drains in well under a second.
const QUEUE_FULL_RETRY_SECONDS: u64 = 1;
/// Who the failure throttle counts when a call carries no client certificate (not on the PHR listener).
const NO_CERTIFICATE: &str = "no-certificate";

/// A decoded Basic credential. The password never leaves this module's checks.
#[derive(Clone)]
pub struct Credentials {
    /// Present when the user-id had the `facility:user` form.
    pub facility_id: Option<String>,
    pub user_id: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("facility_id", &self.facility_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A user row, as Basic authentication sees it.
#[derive(Debug, Clone, FromRow)]
pub struct Account {
    pub facility_id: String,
    pub user_id: String,
    pub display_name: Option<String>,
    pub role: String,
}

/// The shared result of one in-flight verification: `Some(account)` when the credential is valid.
type Verification = Arc<tokio::sync::OnceCell<Option<Account>>>;

/// Verifies Basic credentials against `phr_user`.
pub struct Authenticator {
    db: Db,
    /// Keys the cache's HMAC; random per process.
    cache_key: aws_lc_rs::hmac::Key,
    verified: Mutex<HashMap<[u8; 32], (Account, Instant)>>,
    /// Verifications under way, so a burst of requests with the same credential runs argon2 once.
    in_flight: Mutex<HashMap<[u8; 32], Verification>>,
    /// Verified when the user does not exist, to keep timing uniform.
    dummy_hash: String,
    /// Bounds the argon2 checks running and waiting.
    gate: VerifyGate,
    /// Failed checks per client certificate.
    failures: FailureThrottle,
    /// The failure window's time source.
    clock: Clock,
    /// Where refusals and checks are counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// The `401` every authentication failure answers, with the realm the original used.
pub fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"OpenDolphin\""))
}

/// `503 error.phr.throttled`: every argon2 slot is busy and the queue in front of them is full.
fn queue_full() -> ApiError {
    ApiError::new(
        ErrorCode::Throttled,
        format!("too many password checks in progress; retry after {QUEUE_FULL_RETRY_SECONDS} s"),
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .with_header(header::RETRY_AFTER, HeaderValue::from(QUEUE_FULL_RETRY_SECONDS))
    .with_detail("authLimit", "verificationQueueFull")
    .with_detail("retryAfterSeconds", QUEUE_FULL_RETRY_SECONDS)
}

/// `429 error.phr.throttled`: this client certificate has failed too many password checks lately.
fn certificate_throttled(seconds: u64) -> ApiError {
    ApiError::new(
        ErrorCode::Throttled,
        format!("too many failed password checks with this client certificate; retry after {seconds} s"),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    .with_detail("authLimit", "certificateFailures")
    .with_detail("retryAfterSeconds", seconds)
}

/// Decodes an `Authorization: Basic …` header.
pub fn parse_basic(value: Option<&HeaderValue>) -> Result<Credentials, ApiError> {
    let value = value.ok_or_else(|| unauthenticated("Authorization header with Basic credentials is required"))?;
    let value = value.to_str().map_err(|_| unauthenticated("Authorization header is not valid text"))?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(|| unauthenticated("malformed Authorization"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthenticated("Authorization scheme must be Basic"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unauthenticated("Basic credentials are not valid base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| unauthenticated("Basic credentials are not UTF-8"))?;
    let mut parts = decoded.splitn(3, ':');
    let (first, second, rest) = (parts.next(), parts.next(), parts.next());
    let credentials = match (first, second, rest) {
        (Some(facility), Some(user), Some(password)) => Credentials {
            facility_id: Some(facility.to_owned()),
            user_id: user.to_owned(),
            password: password.to_owned(),
        },
        (Some(user), Some(password), None) => {
            Credentials { facility_id: None, user_id: user.to_owned(), password: password.to_owned() }
        }
        _ => return Err(unauthenticated("Basic credentials must be user:password")),
    };
    if credentials.user_id.is_empty() || credentials.facility_id.as_deref() == Some("") {
        return Err(unauthenticated("Basic credentials name no user"));
    }
    Ok(credentials)
}

/// Hashes a password as an argon2id PHC string (used by `seed` and user management).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default().hash_password(password.as_bytes())?.to_string())
}

impl Authenticator {
    pub fn new(
        db: Db,
        limits: &AuthLimits,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, argon2::password_hash::Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let cache_key = aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng)
            .map_err(|_| argon2::password_hash::Error::Crypto)?;
        let dummy_hash = hash_password("not-a-real-password")?;
        Ok(Self {
            db,
            cache_key,
            verified: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            dummy_hash,
            gate: VerifyGate::new(limits.max_concurrent, limits.max_queued, metrics.clone()),
            failures: FailureThrottle::new(limits.max_failures, limits.failure_window),
            clock,
            metrics,
        })
    }

    /// The gate argon2 checks pass (its slots are what `phr_auth_verifications_in_flight` counts).
    pub fn gate(&self) -> &VerifyGate {
        &self.gate
    }

    /// Authenticates `credentials` for `facility_id` (the credential's own facility, else the header's),
    /// presented over a connection with the client certificate whose SHA-256 is `client`.
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        facility_id: &str,
        client: Option<&str>,
    ) -> Result<Account, ApiError> {
        let cache_key = self.cache_key_for(facility_id, credentials);
        if let Some(account) = self.cached(&cache_key) {
            return Ok(account);
        }
        let client = client.unwrap_or(NO_CERTIFICATE);
        if let Err(wait) = self.failures.check(client, self.clock.now()) {
            self.metrics.auth_refused(AuthRefusal::CertificateThrottled);
            return Err(certificate_throttled(wait.as_secs()));
        }
        let verification = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight.entry(cache_key).or_default().clone()
        };
        let outcome = verification.get_or_try_init(|| self.verify(credentials, facility_id)).await.cloned();
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&cache_key);
        match outcome? {
            Some(account) => {
                self.remember(cache_key, account.clone());
                Ok(account)
            }
            None => {
                self.failures.record_failure(client, self.clock.now());
                Err(unauthenticated("invalid user or password"))
            }
        }
    }

    /// Looks the user up and runs argon2id on a blocking thread: `Some(account)` when the password matches.
    async fn verify(&self, credentials: &Credentials, facility_id: &str) -> Result<Option<Account>, ApiError> {
        let row: Option<(String, String, Option<String>, String)> = with_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT facility_id, password_hash, display_name, role FROM phr_user \
                 WHERE lower(facility_id) = lower($1) AND user_id = $2",
            )
            .bind(facility_id)
            .bind(&credentials.user_id)
            .fetch_optional(pool)
            .await
        })?;
        let (account, hash) = match row {
            Some((facility_id, hash, display_name, role)) => {
                (Some(Account { facility_id, user_id: credentials.user_id.clone(), display_name, role }), hash)
            }
            None => (None, self.dummy_hash.clone()),
        };
        let mut slot = self.gate.acquire().await.map_err(|QueueFull| {
            self.metrics.auth_refused(AuthRefusal::QueueFull);
            queue_full()
        })?;
        let password = credentials.password.clone();
        // The slot moves into the blocking task: it is released when the hash is done, even if the caller is gone.
        let matches = tokio::task::spawn_blocking(move || slot.verify(password.as_bytes(), &hash))
            .await
            .map_err(ApiError::internal)?;
        self.metrics.auth_verified(matches && account.is_some());
        Ok(account.filter(|_| matches))
    }

    fn cache_key_for(&self, facility_id: &str, credentials: &Credentials) -> [u8; 32] {
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.cache_key);
        for part in [facility_id.to_ascii_lowercase().as_str(), &credentials.user_id, &credentials.password] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(context.sign().as_ref());
        key
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Account> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(account, _)| account.clone())
    }

    fn remember(&self, key: [u8; 32], account: Account) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, (account, Instant::now()));
    }

    /// Forgets every remembered credential (after a password change).
    pub fn forget_all(&self) {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn facility_user_password_form() {
        let c = parse_basic(Some(&basic("F001:ops:pa:ss"))).unwrap();
        assert_eq!((c.facility_id.as_deref(), c.user_id.as_str(), c.password.as_str()), (Some("F001"), "ops", "pa:ss"));
    }

    #[test]
    fn user_password_form() {
        let c = parse_basic(Some(&basic("ops:secret"))).unwrap();
        assert_eq!((c.facility_id, c.user_id.as_str(), c.password.as_str()), (None, "ops", "secret"));
    }

    #[test]
    fn malformed_headers_are_401() {
        for bad in ["Bearer abc", "Basic !!!notbase64", "Basic", "Basic bm9jb2xvbg=="] {
            let err = parse_basic(Some(&HeaderValue::from_static(bad))).unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthenticated, "{bad}");
            assert!(err.headers.contains_key(header::WWW_AUTHENTICATE));
        }
        assert_eq!(parse_basic(None).unwrap_err().code, ErrorCode::Unauthenticated);
        let non_utf8 = HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap();
        assert_eq!(parse_basic(Some(&non_utf8)).unwrap_err().code, ErrorCode::Unauthenticated);
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = parse_basic(Some(&basic("F:u:topsecret"))).unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
