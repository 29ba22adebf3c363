//! Failed API requests: a status, a message, and for object-store errors
//! their name, sent as [`ErrorBody`].

use std::time::Duration;

use http::{StatusCode, header};
use ostore_status::Precondition;

use crate::auth::AuthError;
use crate::http::{ResponseBody, json_response};
use crate::objectstore;

use super::wire::ErrorBody;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// The object-store error's name, if it is one.
    code: Option<&'static str>,
    retry_after: Option<Duration>,
    /// For 405: the methods the path does serve.
    allow: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
            retry_after: None,
            allow: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub(super) fn method_not_allowed(message: impl Into<String>, allow: String) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(super) fn into_response(self) -> hyper::Response<ResponseBody> {
        let body = ErrorBody {
            status: self.status.as_u16(),
            message: self.message,
            error: self.code.map(String::from),
        };
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        }
        // The rest of a body that did not arrive is not waited for.
        if self.status == StatusCode::REQUEST_TIMEOUT {
            headers.insert(header::CONNECTION, "close".parse().expect("valid"));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, secs.into());
        }
        if let Some(allow) = self.allow.and_then(|a| a.parse().ok()) {
            headers.insert(header::ALLOW, allow);
        }
        response
    }
}

impl From<objectstore::Error> for ApiError {
    /// The status from the one table every HTTP front end shares; the REST
    /// API expresses conditions as `If-Match` / `If-None-Match`.
    fn from(e: objectstore::Error) -> Self {
        let code = e.code();
        let status = StatusCode::from_u16(code.http_status(Precondition::Headers))
            .expect("the table holds valid statuses");
        Self {
            code: Some(code.name()),
            retry_after: e.retry_after(),
            ..Self::new(status, e.to_string())
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            // The backend failed while reading the credential: the object
            // store's own answer (503, with its error code).
            AuthError::Storage(e) => return e.into(),
            AuthError::File(_) | AuthError::Host(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, e.to_string())
    }
}
