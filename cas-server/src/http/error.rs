//! API errors: every failure answers `{"error": code, "message": text}` with
//! the matching status.

use http::{header, Response, StatusCode};
use reprovm_sdk::error::CasError;
use reprovm_sdk::proto::ErrorBody;

use super::body::{self, Body};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable text.
    pub message: String,
    /// Extra headers (e.g. `Allow` for 405).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    /// An error with status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 404 for a path that names no route.
    pub fn no_route(path: &str) -> Self {
        Self::new(404, "not_found", format!("no route for {path:?}"))
    }

    /// 405 with the methods the route allows.
    pub fn method_not_allowed(method: &http::Method, allow: &str) -> Self {
        let mut e = Self::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed here; allowed: {allow}"),
        );
        e.headers.push((header::ALLOW, allow.to_string()));
        e
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body::json(&ErrorBody {
                error: self.code.to_string(),
                message: self.message,
            }))
            .expect("valid response");
        for (name, value) in self.headers {
            if let Ok(v) = value.parse() {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Unauthenticated(m) => {
                let mut e = Self::new(401, "unauthorized", m);
                e.headers.push((
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"cas-server\", Basic realm=\"cas-server\"".into(),
                ));
                e
            }
            AuthError::Forbidden(m) => Self::new(403, "forbidden", m),
        }
    }
}

impl From<CasError> for ApiError {
    fn from(e: CasError) -> Self {
        let status = e.status();
        if status >= 500 && status != 507 {
            tracing::error!(error = %e, "store error");
        }
        Self::new(status, e.code(), e.to_string())
    }
}
