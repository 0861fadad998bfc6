//! RFC 9457 problem details: every error the HTTP APIs return has this shape, with a
//! stable `type` per kind of problem so clients can branch on it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use withdraw_core::ports::{BalanceError, QueueError, StoreError};
use withdraw_core::stages::ActionError;
use withdraw_core::wire::{FieldErrorV1, ProblemV1};

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: Option<String>,
    pub errors: Vec<FieldErrorV1>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &'static str, title: &'static str) -> Problem {
        Problem { status, slug, title, detail: None, errors: Vec::new() }
    }

    pub fn detail(mut self, d: impl Into<String>) -> Problem {
        self.detail = Some(d.into());
        self
    }

    pub fn unauthorized(detail: &str) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Request is not authenticated").detail(detail)
    }

    pub fn forbidden(detail: &str) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed for this token's roles").detail(detail)
    }

    pub fn not_found() -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "No such resource")
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable, retry later").detail(detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", "Not possible in the resource's current state").detail(detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-request", "Request is malformed").detail(detail)
    }

    pub fn unsupported_media_type() -> Problem {
        Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Body must be application/json")
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body is too large").detail(detail)
    }

    /// A fault of ours, not of the request.
    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error").detail(detail)
    }
}

// A dependency that fails answers 503 with `Retry-After` (see `into_response`), whether or
// not its error `is_retryable`: to the caller either is "not now", and the detail names the
// dependency.

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        Problem::unavailable(e.to_string())
    }
}

impl From<QueueError> for Problem {
    fn from(e: QueueError) -> Problem {
        Problem::unavailable(e.to_string())
    }
}

impl From<BalanceError> for Problem {
    fn from(e: BalanceError) -> Problem {
        Problem::unavailable(e.to_string())
    }
}

/// An operator action refused (404, 409, 400) or not carried out (503).
impl From<ActionError> for Problem {
    fn from(e: ActionError) -> Problem {
        match e {
            ActionError::NotFound(_) => Problem::not_found(),
            ActionError::Conflict(m) => Problem::conflict(m),
            ActionError::MissingReason => Problem::bad_request("a non-empty \"reason\" is required"),
            ActionError::Stage(e) => Problem::unavailable(e.to_string()),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemV1 {
            kind: format!("urn:withdrawd:problem:{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
