//! The one place where errors become HTTP answers: a status, a stable
//! machine-readable `code`, and the JSON body every client expects:
//! `{"status": "error", "errorMessage": "...", "code": "..."}`.
//! Internal errors are logged in full and answered without details.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::api::ErrorBody;
use crate::auth::{AuthError, KeyError};
use crate::build::SubmitError;
use crate::components::ComponentError;
use crate::image::ImageError;
use crate::jobs::JobError;
use crate::model::NameError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (a busy service).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// The same, answered with `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 503: the index names a blob the store no longer holds (lost behind
    /// the service's back); never answered as a truncated 200.
    pub fn blob_lost() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "blob_lost",
            "the stored tarball is missing from the blob store; an operator must restore it or \
             rebuild the component (`artifact-store verify` lists what is lost)",
        )
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    /// 507: the data directory's disk is full (or below its free-space floor).
    pub fn disk_full(detail: impl std::fmt::Display) -> Self {
        tracing::error!("storage full: {detail}");
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            "the store's disk is full (no space left on the device holding the data directory): nothing was stored",
        )
    }
    /// An I/O error: 507 when the disk is full, else an internal error.
    pub fn io(err: &std::io::Error) -> Self {
        if crate::store::is_disk_full(err) {
            Self::disk_full(err)
        } else {
            Self::internal(err)
        }
    }
    /// A request body that stopped arriving.
    pub fn body_error(e: &actix_web::error::PayloadError) -> Self {
        use actix_web::error::PayloadError as P;
        match e {
            P::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("{io}: nothing stored"),
            ),
            other => Self::bad_request(format!(
                "the request body did not arrive whole ({other}): nothing stored"
            )),
        }
    }
    pub fn internal(err: impl std::fmt::Display) -> Self {
        let id = rand::random::<u32>();
        tracing::error!(error_id = id, "internal error: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error (logged as {id:08x})"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            b.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Some(secs) = self.retry_after {
            b.insert_header(("Retry-After", secs.to_string()));
        }
        b.json(ErrorBody::new(self.code, self.message.clone()))
    }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;
    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::MissingKey
            | AuthError::InvalidKey
            | AuthError::Expired { .. }
            | AuthError::Revoked { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
            }
            AuthError::Forbidden { .. }
            | AuthError::OutOfScope { .. }
            | AuthError::Scoped { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            AuthError::Unavailable(_) => ApiError::internal(e),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        let msg = e.to_string();
        match e {
            KeyError::Invalid(_) => ApiError::bad_request(msg),
            KeyError::Name(n) => n.into(),
            KeyError::Exists(_) | KeyError::InConfig(_) | KeyError::Generated(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", msg)
            }
            KeyError::NotFound(_) => ApiError::not_found(msg),
            KeyError::NoIndex => ApiError::internal(msg),
            KeyError::Index(e) => e.into(),
        }
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", e.to_string())
    }
}

impl From<ComponentError> for ApiError {
    fn from(e: ComponentError) -> Self {
        use ComponentError as E;
        let msg = e.to_string();
        match e {
            E::Name(n) => n.into(),
            E::Store(StoreError::BadArchive(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_archive", msg)
            }
            E::Store(StoreError::TooLarge { .. } | StoreError::TooManyEntries { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg)
            }
            E::Store(StoreError::Io(e)) => ApiError::io(&e),
            E::Index(e) => e.into(),
            E::NoRoom { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                msg,
            ),
            E::BlobLost(h) => {
                tracing::error!(blob = %h, "{msg}");
                ApiError::blob_lost()
            }
            E::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", msg),
            E::ChecksumMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "checksum_mismatch", msg)
            }
            E::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            E::BlobNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "blob_not_found", msg),
            E::OtherTag { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "wrong_top_directory", msg)
            }
            E::BadRequest(_) => ApiError::bad_request(msg),
            E::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg),
            E::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", msg),
        }
    }
}

impl From<crate::index::IndexError> for ApiError {
    fn from(e: crate::index::IndexError) -> Self {
        if e.is_disk_full() {
            ApiError::disk_full(e)
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(m) => ApiError::bad_request(m),
            SubmitError::Jobs(e) => e.into(),
        }
    }
}

impl From<crate::build::closure::ResolveError> for ApiError {
    fn from(e: crate::build::closure::ResolveError) -> Self {
        use crate::build::closure::ResolveError as R;
        let msg = e.to_string();
        match e {
            R::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "dependency_conflict", msg),
            R::Cycle(_) => ApiError::new(StatusCode::CONFLICT, "dependency_cycle", msg),
            R::LockMismatch(_) => ApiError::new(StatusCode::CONFLICT, "lock_mismatch", msg),
            R::Invalid(_) => ApiError::bad_request(msg),
            R::Busy(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", msg).retry_after(5)
            }
            R::Source(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unresolvable", msg),
            R::Internal(_) => ApiError::internal(msg),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Index(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let msg = e.to_string();
        match e {
            ImageError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
            }
            ImageError::BadRequest(_) | ImageError::Store(StoreError::BadArchive(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", msg)
            }
            ImageError::TooLarge(_)
            | ImageError::Store(StoreError::TooLarge { .. } | StoreError::TooManyEntries { .. }) => {
                ApiError::too_large(msg)
            }
            ImageError::Store(StoreError::Io(e)) => ApiError::io(&e),
            ImageError::Index(e) => e.into(),
            ImageError::Jobs(e) => e.into(),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::internal(e)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e)
    }
}

/// Largest JSON request body.
pub const JSON_LIMIT: usize = 4 << 20;

/// Handlers for actix's own extractor failures, so they answer JSON too.
pub fn json_config() -> actix_web::web::JsonConfig {
    use actix_web::error::JsonPayloadError as J;
    actix_web::web::JsonConfig::default()
        .limit(JSON_LIMIT)
        .error_handler(|err, req| {
            match &err {
                J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::too_large(format!(
                    "the JSON body is larger than the limit of {JSON_LIMIT} bytes"
                )),
                J::ContentType => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!(
                        "this route takes a JSON body: send it with Content-Type: application/json{}",
                        match req.headers().get("content-type").and_then(|v| v.to_str().ok()) {
                            Some(ct) => format!(" (the request says {ct:?})"),
                            None => " (the request has no Content-Type)".to_owned(),
                        }
                    ),
                ),
                J::Deserialize(e) => ApiError::bad_request(super::wording::json_body(e, req)),
                J::Payload(p) => ApiError::body_error(p),
                _ => ApiError::bad_request("the JSON body could not be read"),
            }
            .into()
        })
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|err, req| {
        let said = match &err {
            actix_web::error::QueryPayloadError::Deserialize(e) => e.to_string(),
            _ => String::new(),
        };
        ApiError::bad_request(super::wording::query(&said, req)).into()
    })
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|err, _| {
        let said = match &err {
            actix_web::error::PathError::Deserialize(e) => e.to_string(),
            _ => String::new(),
        };
        ApiError::bad_request(super::wording::path(&said)).into()
    })
}

impl From<crate::jobs::TokenError> for ApiError {
    fn from(e: crate::jobs::TokenError) -> Self {
        use crate::jobs::TokenError as T;
        match e {
            T::Index(i) => i.into(),
            other => ApiError::new(StatusCode::FORBIDDEN, "forbidden", other.to_string()),
        }
    }
}

impl From<crate::build::dispatch::WorkerError> for ApiError {
    fn from(e: crate::build::dispatch::WorkerError) -> Self {
        use crate::build::dispatch::WorkerError as W;
        match e {
            W::Token(t) => t.into(),
            W::NoSpec | W::Storing | W::WrongKind(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            W::Store(c) => c.into(),
            W::Jobs(j) => j.into(),
            W::Rejected(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", m),
            W::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
        }
    }
}
