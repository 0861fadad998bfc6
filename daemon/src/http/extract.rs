//! Extractors that refuse a request the way every other error is refused, as
//! problem+json (docs/design.md §6), instead of axum's plain-text rejections: a JSON body,
//! a query string and path segments, each deserialized with serde into a typed struct.

use super::problem::Problem;
use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};

/// What a request body must look like, named in the problem a malformed one gets.
pub trait BodyShape {
    /// Completes "body must be …".
    const EXPECTED: &'static str;
}

/// A JSON request body. A content type other than JSON is 415, a body past the router's
/// limit 413, malformed JSON or the wrong shape 400 with serde's message (which names the
/// field). A body sent without a content type is read as JSON, as the intake does.
#[derive(Debug)]
pub struct ProblemJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + BodyShape> FromRequest<S> for ProblemJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE)
            && !is_json(ct)
        {
            return Err(Problem::unsupported_media_type());
        }
        let body = Bytes::from_request(req, state).await.map_err(|r| match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Problem::payload_too_large(r.body_text()),
            _ => Problem::bad_request(r.body_text()),
        })?;
        let value =
            axum::Json::<T>::from_bytes(&body).map_err(|r| Problem::bad_request(format!("body must be {}: {}", T::EXPECTED, cause(&r))))?;
        Ok(ProblemJson(value.0))
    }
}

/// `application/json`, or any `application/…+json`, parameters allowed.
fn is_json(ct: &HeaderValue) -> bool {
    let Ok(ct) = ct.to_str() else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some(sub) => sub == "json" || sub.ends_with("+json"),
        None => false,
    }
}

/// The query string as `T`; one that does not fit is 400 with what was wrong.
#[derive(Debug)]
pub struct ProblemQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ProblemQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Query(q) = Query::<T>::from_request_parts(parts, state).await.map_err(|r| Problem::bad_request(cause(&r)))?;
        Ok(ProblemQuery(q))
    }
}

/// The path's parameters as `T`. A segment that does not parse names no resource: 404,
/// with what was expected as the detail.
#[derive(Debug)]
pub struct ProblemPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ProblemPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(ProblemPath(p)),
            Err(PathRejection::FailedToDeserializePathParams(e)) if e.status().is_client_error() => {
                let detail = match e.kind() {
                    ErrorKind::Message(m) | ErrorKind::DeserializeError { message: m, .. } => m.clone(),
                    other => other.to_string(),
                };
                Err(Problem::not_found().detail(detail))
            }
            // The route and the type disagree: a bug here, not in the request.
            Err(r) => Err(Problem::internal(r.body_text())),
        }
    }
}

/// The message under a rejection's fixed prefix (serde's, with the field's path), or the
/// rejection's own text when it has none.
fn cause(r: &dyn std::error::Error) -> String {
    r.source().map_or_else(|| r.to_string(), ToString::to_string)
}

/// Deserializes a path segment or query value from its text with `parse`; what `parse`
/// refuses fails with its message.
pub fn parsed<'de, D, T, E>(d: D, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: std::fmt::Display,
{
    let s = String::deserialize(d)?;
    parse(&s).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let check = |ct: &str| is_json(&HeaderValue::from_str(ct).unwrap());
        for ok in ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/problem+json"] {
            assert!(check(ok), "{ok}");
        }
        for refused in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json", "application/jsonx", ""] {
            assert!(!check(refused), "{refused}");
        }
    }
}
