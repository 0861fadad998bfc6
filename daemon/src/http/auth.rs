//! Authentication of both APIs. Intake: HMAC-SHA256 over
//! `{timestamp}\n{METHOD}\n{path?query}\n{idempotency_key}\n{body}` with a per-client secret,
//! the timestamp within a window of server time. Everything that decides what a request does
//! is signed: the query string and the `Idempotency-Key` too, so a captured request re-sent
//! inside the window under another key fails the signature instead of paying a second time;
//! re-sent as it was, it is the same request and the idempotency key answers it.
//! Admin: bearer tokens, each with a name and roles; a handler names the role it needs as a
//! type, `Authed<Operator>`, and runs only for a caller that holds it.

use super::problem::Problem;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::marker::PhantomData;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

pub struct HmacClients {
    clients: Vec<(String, Zeroizing<Vec<u8>>)>,
    window_secs: u64,
}

impl HmacClients {
    pub fn new(clients: Vec<(String, Zeroizing<Vec<u8>>)>, window_secs: u64) -> Self {
        Self { clients, window_secs }
    }

    /// Returns the authenticated client id. `path_and_query` is the request target exactly
    /// as sent (path and query string); the `Idempotency-Key` header is read from `headers`.
    pub fn verify(&self, headers: &HeaderMap, method: &str, path_and_query: &str, body: &[u8], now_secs: u64) -> Result<String, Problem> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let key_id = h("x-api-key").ok_or_else(|| Problem::unauthorized("missing X-Api-Key header"))?;
        let ts = h("x-timestamp").ok_or_else(|| Problem::unauthorized("missing X-Timestamp header"))?;
        let sig = h("x-signature").ok_or_else(|| Problem::unauthorized("missing X-Signature header"))?;
        let ts_n: u64 = ts.parse().map_err(|_| Problem::unauthorized("X-Timestamp must be unix seconds"))?;
        if ts_n.abs_diff(now_secs) > self.window_secs {
            return Err(Problem::unauthorized(&format!("X-Timestamp is more than {} s from server time", self.window_secs)));
        }
        let Some((_, secret)) = self.clients.iter().find(|(id, _)| id == key_id) else {
            return Err(Problem::unauthorized("unknown API key or bad signature"));
        };
        // A key that is not valid header text cannot be signed over as the client sent it.
        let idempotency_key = match headers.get("idempotency-key") {
            Some(v) => v.to_str().map_err(|_| Problem::unauthorized("Idempotency-Key must be visible ASCII"))?,
            None => "",
        };
        let sig = hex::decode(sig).map_err(|_| Problem::unauthorized("X-Signature must be lowercase hex"))?;
        let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| Problem::unauthorized("unusable client secret"))?;
        signing_input(&mut mac, ts, method, path_and_query, idempotency_key, body);
        mac.verify_slice(&sig).map_err(|_| Problem::unauthorized("unknown API key or bad signature"))?;
        Ok(key_id.to_owned())
    }
}

/// Feeds the signing string `{timestamp}\n{METHOD}\n{path?query}\n{idempotency_key}\n{body}`.
fn signing_input(mac: &mut HmacSha256, ts: &str, method: &str, path_and_query: &str, idempotency_key: &str, body: &[u8]) {
    for part in [ts, method, path_and_query, idempotency_key] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body);
}

/// Computes the signature a client sends (empty `idempotency_key` when the request has none);
/// used by the bench and the tests.
pub fn sign(secret: &[u8], ts: u64, method: &str, path_and_query: &str, idempotency_key: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    signing_input(&mut mac, &ts.to_string(), method, path_and_query, idempotency_key, body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    /// Only posts Alertmanager notifications: the token Alertmanager holds.
    Alerts,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Alerts => "alerts",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "approver" => Some(Role::Approver),
            "alerts" => Some(Role::Alerts),
            _ => None,
        }
    }
}

/// Who holds an admin token: the name the audit log records, and the token's roles.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub roles: Vec<Role>,
}

/// Admin bearer tokens, stored as SHA-256 digests and compared in constant time.
pub struct AdminTokens {
    tokens: Vec<([u8; 32], Caller)>,
}

impl AdminTokens {
    pub fn new(tokens: Vec<(Zeroizing<String>, Caller)>) -> Self {
        Self { tokens: tokens.into_iter().map(|(t, op)| (Sha256::digest(t.as_bytes()).into(), op)).collect() }
    }

    pub fn verify(&self, headers: &HeaderMap, need: Role) -> Result<Caller, Problem> {
        let op = self.verify_any(headers)?;
        if !op.roles.contains(&need) {
            return Err(Problem::forbidden(&format!("this call needs the {} role", need.as_str())));
        }
        Ok(op)
    }

    /// The token's holder, whatever its roles.
    pub fn verify_any(&self, headers: &HeaderMap) -> Result<Caller, Problem> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Problem::unauthorized("missing Authorization: Bearer token"))?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut found = None;
        for (d, op) in &self.tokens {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(op);
            }
        }
        found.cloned().ok_or_else(|| Problem::unauthorized("unknown token"))
    }
}

/// A role an admin call needs, as a type a handler names: `Authed<Operator>`.
pub trait NeedsRole {
    /// None for a call any valid token may make.
    const ROLE: Option<Role>;
}

/// The viewer role: reads.
pub struct Viewer;
/// The operator role: reprocess, discard, pause, credit.
pub struct Operator;
/// The approver role: the second person of four-eyes decisions.
pub struct Approver;
/// The alerts role: Alertmanager's notifications.
pub struct Alerts;
/// Any valid token, whatever its roles.
pub struct AnyRole;

impl NeedsRole for Viewer {
    const ROLE: Option<Role> = Some(Role::Viewer);
}
impl NeedsRole for Operator {
    const ROLE: Option<Role> = Some(Role::Operator);
}
impl NeedsRole for Approver {
    const ROLE: Option<Role> = Some(Role::Approver);
}
impl NeedsRole for Alerts {
    const ROLE: Option<Role> = Some(Role::Alerts);
}
impl NeedsRole for AnyRole {
    const ROLE: Option<Role> = None;
}

/// The caller of an admin call, authenticated by its bearer token and holding the role `R`.
/// Extracting it answers 401 (no token, or an unknown one) or 403 (the role missing) as
/// problem+json before the handler runs; the state gives the tokens (`FromRef`).
pub struct Authed<R> {
    pub caller: Caller,
    role: PhantomData<fn() -> R>,
}

impl<S, R> FromRequestParts<S> for Authed<R>
where
    S: Send + Sync,
    R: NeedsRole,
    Arc<AdminTokens>: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let tokens = Arc::<AdminTokens>::from_ref(state);
        let caller = match R::ROLE {
            Some(need) => tokens.verify(&parts.headers, need)?,
            None => tokens.verify_any(&parts.headers)?,
        };
        Ok(Authed { caller, role: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(key: &str, ts: u64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_str(key).unwrap());
        h.insert("x-timestamp", HeaderValue::from_str(&ts.to_string()).unwrap());
        h.insert("x-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    fn with_key(mut h: HeaderMap, key: &str) -> HeaderMap {
        h.insert("idempotency-key", HeaderValue::from_str(key).unwrap());
        h
    }

    /// A request captured and re-sent inside the window with another `Idempotency-Key`, or
    /// with the key dropped, or with another query string, fails the signature.
    #[test]
    fn a_captured_request_cannot_be_replayed_under_another_key_or_query() {
        let c = HmacClients::new(vec![("dev".into(), Zeroizing::new(b"s3cret".to_vec()))], 30);
        let now = 1_700_000_000;
        let body = br#"{"amount":"1"}"#;
        let sig = sign(b"s3cret", now, "POST", "/v1/withdrawals", "order-1", body);
        let check = |h: HeaderMap, path: &str| c.verify(&h, "POST", path, body, now).is_ok();
        assert!(check(with_key(headers("dev", now, &sig), "order-1"), "/v1/withdrawals"), "the request as signed");
        assert!(!check(with_key(headers("dev", now, &sig), "order-2"), "/v1/withdrawals"), "another key");
        assert!(!check(headers("dev", now, &sig), "/v1/withdrawals"), "the key dropped");
        let list = sign(b"s3cret", now, "GET", "/v1/withdrawals?limit=10", "", b"");
        let get = |path: &str| c.verify(&headers("dev", now, &list), "GET", path, b"", now).is_ok();
        assert!(get("/v1/withdrawals?limit=10"));
        assert!(!get("/v1/withdrawals?limit=1000"), "another query string");
        assert!(!get("/v1/withdrawals"), "the query dropped");
    }

    #[test]
    fn hmac_table() {
        let c = HmacClients::new(vec![("dev".into(), Zeroizing::new(b"s3cret".to_vec()))], 30);
        let now = 1_700_000_000;
        let body = br#"{"a":1}"#;
        let good = sign(b"s3cret", now, "POST", "/v1/withdrawals", "", body);
        let check = |h: HeaderMap, path: &str, body: &[u8]| c.verify(&h, "POST", path, body, now).map_err(|p| p.detail.unwrap_or_default());
        assert_eq!(check(headers("dev", now, &good), "/v1/withdrawals", body), Ok("dev".into()));
        assert!(
            check(headers("dev", now - 31, &sign(b"s3cret", now - 31, "POST", "/v1/withdrawals", "", body)), "/v1/withdrawals", body)
                .is_err()
        );
        assert!(
            check(headers("dev", now + 31, &sign(b"s3cret", now + 31, "POST", "/v1/withdrawals", "", body)), "/v1/withdrawals", body)
                .is_err()
        );
        assert!(check(headers("dev", now, &good), "/v1/withdrawals", br#"{"a":2}"#).is_err());
        assert!(check(headers("dev", now, &good), "/v1/other", body).is_err());
        assert!(check(headers("other", now, &good), "/v1/withdrawals", body).is_err());
        assert!(check(headers("dev", now, &sign(b"wrong", now, "POST", "/v1/withdrawals", "", body)), "/v1/withdrawals", body).is_err());
        assert!(check(headers("dev", now, "zz"), "/v1/withdrawals", body).is_err());
        assert!(check(HeaderMap::new(), "/v1/withdrawals", body).is_err());
    }

    #[test]
    fn bearer_roles() {
        let t = AdminTokens::new(vec![
            (Zeroizing::new("v".into()), Caller { name: "vera".into(), roles: vec![Role::Viewer] }),
            (Zeroizing::new("o".into()), Caller { name: "otto".into(), roles: vec![Role::Viewer, Role::Operator] }),
        ]);
        let h = |tok: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_str(&format!("Bearer {tok}")).unwrap());
            h
        };
        assert_eq!(t.verify(&h("v"), Role::Viewer).unwrap().name, "vera");
        assert_eq!(t.verify(&h("v"), Role::Operator).unwrap_err().status.as_u16(), 403);
        assert_eq!(t.verify(&h("o"), Role::Operator).unwrap().name, "otto");
        assert_eq!(t.verify(&h("x"), Role::Viewer).unwrap_err().status.as_u16(), 401);
        assert_eq!(t.verify(&HeaderMap::new(), Role::Viewer).unwrap_err().status.as_u16(), 401);
    }
}
