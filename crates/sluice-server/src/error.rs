//! Errors as Kafka Connect answers them: `{"error_code": 404, "message": "…"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_core::ErrorKind;
use sluice_core::config::redact;

/// An error answer. Messages are redacted before they leave.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The HTTP status again, as Kafka Connect writes it.
    pub error_code: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(connector: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Connector {connector} not found"),
        )
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// The same error, its message preceded by `what: `.
    pub fn prefixed(mut self, what: &str) -> ApiError {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<sluice_core::Error> for ApiError {
    /// A config problem is the caller's (400); a store that cannot be reached is the server's
    /// (500), with the store's own message.
    fn from(e: sluice_core::Error) -> ApiError {
        let status = match e.kind() {
            ErrorKind::Config => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut message = e.to_string();
        if let Some(h) = e.hint() {
            message.push_str(&format!(" ({h})"));
        }
        ApiError::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error_code: self.status.as_u16(),
            message: redact(&self.message),
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
