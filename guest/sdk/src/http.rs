//! A small layer over `wasi:http` for writing request handlers.
//!
//! Implement [`Handler`] for a type and name it in [`export!`]; the handler
//! gets a [`Request`] and returns a [`Response`], which the SDK sends. For
//! full control (streaming, trailers) implement
//! [`wasip2::exports::http::incoming_handler::Guest`] yourself and call
//! [`Request::from_incoming`] and [`Response::send`] as needed.

use std::fmt;
use std::io::{Read, Write};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

pub use wasip2::http::types::Method;

use crate::{Error, Precondition};

/// The default bound of [`Request::body`]: 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// An HTTP request handler, exported with [`export!`].
pub trait Handler {
    /// Answers one request.
    fn handle(request: Request) -> Response;
}

/// Exports a [`Handler`] as the component's `wasi:http/incoming-handler`.
///
/// Use it once per component, at the crate root:
///
/// ```no_run
/// use ostore_sdk::http::{Handler, Request, Response};
///
/// struct Hello;
///
/// impl Handler for Hello {
///     fn handle(_request: Request) -> Response {
///         Response::text(200, "hello")
///     }
/// }
///
/// ostore_sdk::http::export!(Hello);
/// ```
#[doc(inline)]
pub use crate::__export_http as export;

#[doc(hidden)]
#[macro_export]
macro_rules! __export_http {
    ($handler:ty) => {
        #[doc(hidden)]
        struct __OstoreSdkIncomingHandler;

        impl $crate::wasip2::exports::http::incoming_handler::Guest for __OstoreSdkIncomingHandler {
            fn handle(
                request: $crate::wasip2::http::types::IncomingRequest,
                response_out: $crate::wasip2::http::types::ResponseOutparam,
            ) {
                $crate::http::serve::<$handler>(request, response_out);
            }
        }

        $crate::wasip2::http::proxy::export!(__OstoreSdkIncomingHandler);
    };
}

/// Runs `H` on an incoming request and sends its response. This is what
/// [`export!`] calls; use it from a hand-written `Guest` implementation.
pub fn serve<H: Handler>(request: IncomingRequest, response_out: ResponseOutparam) {
    H::handle(Request::from_incoming(request)).send(response_out);
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the limit, given in bytes.
    TooLarge(usize),
    /// The body was already read (or taken) once.
    AlreadyRead,
    /// The stream failed; the string says how.
    Read(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(limit) => {
                write!(f, "request body too large: the limit is {limit} bytes")
            }
            BodyError::AlreadyRead => f.write_str("request body already read"),
            BodyError::Read(why) => write!(f, "cannot read request body: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// An incoming HTTP request: method, target, headers, and a body read on
/// demand.
#[derive(Debug)]
pub struct Request {
    method: Method,
    path_with_query: String,
    headers: Vec<(String, Vec<u8>)>,
    inner: Option<IncomingRequest>,
}

impl Request {
    /// Wraps a raw `wasi:http` request; reads its method, target and headers
    /// but not its body.
    pub fn from_incoming(request: IncomingRequest) -> Request {
        let headers = request.headers().entries();
        Request {
            method: request.method(),
            path_with_query: request.path_with_query().unwrap_or_else(|| "/".to_owned()),
            headers,
            inner: Some(request),
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target as sent: path and query, e.g. `/a/b?x=1`.
    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    /// The path, without the query; still percent-encoded (see
    /// [`percent_decode`]).
    pub fn path(&self) -> &str {
        match self.path_with_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_with_query,
        }
    }

    /// The raw query string after `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, q)| q)
    }

    /// The first value of query parameter `name`, percent-decoded (with `+`
    /// read as a space). `None` if it is absent; `Some(Err(InvalidEncoding))`
    /// if its value is not valid percent-encoded UTF-8.
    pub fn query_param(&self, name: &str) -> Option<Result<String, InvalidEncoding>> {
        query_param(self.query()?, name)
    }

    /// All headers, in order, with lower-case names.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Reads the whole body, refusing one above [`DEFAULT_MAX_BODY`]. A body
    /// can be read only once.
    pub fn body(&mut self) -> Result<Vec<u8>, BodyError> {
        self.body_with_limit(DEFAULT_MAX_BODY)
    }

    /// Reads the whole body, refusing one above `max` bytes (at once if its
    /// `content-length` says so). A body can be read only once.
    pub fn body_with_limit(&mut self, max: usize) -> Result<Vec<u8>, BodyError> {
        let request = self.inner.take().ok_or(BodyError::AlreadyRead)?;
        let declared = self
            .header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(BodyError::TooLarge(max));
        }
        let body = request.consume().map_err(|()| BodyError::AlreadyRead)?;
        let mut stream = body
            .stream()
            .map_err(|()| BodyError::Read("body stream unavailable".to_owned()))?;
        let mut bytes = Vec::with_capacity(declared.map_or(0, |len| len as usize));
        // Read one byte past the limit to tell "exactly max" from "more".
        stream
            .by_ref()
            .take(max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| BodyError::Read(e.to_string()))?;
        drop(stream);
        if bytes.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        // Trailers are not offered; finishing the body just releases it.
        let _ = IncomingBody::finish(body);
        Ok(bytes)
    }

    /// The raw request, unless its body was already read.
    pub fn into_incoming(self) -> Option<IncomingRequest> {
        self.inner
    }
}

/// A response to send: status, headers and a body held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status` and no headers.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// An `application/octet-stream` response.
    pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status)
            .with_header("content-type", "application/octet-stream")
            .with_body(body)
    }

    /// A `text/plain` answer to a store error, with the status every HTTP
    /// front end of ostore gives it (see
    /// [`ErrorCode::http_status`](crate::ErrorCode::http_status); conditions
    /// a guest checks itself, such as fail-if-present, are `409`), and
    /// `retry-after` (whole seconds) when the store is rate limited.
    pub fn error(error: &Error) -> Response {
        let status = error.code().http_status(Precondition::Body);
        let response = Response::text(status, error.to_string());
        match error {
            Error::RateLimited(ms) => {
                response.with_header("retry-after", ms.div_ceil(1000).max(1).to_string())
            }
            _ => response,
        }
    }

    /// Adds a header (names are sent lower-case by `wasi:http`).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers added so far.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Sends the response, adding `content-length` unless already set. If
    /// the status or a header is invalid a plain 500 is sent instead. Write
    /// errors (the client went away) are ignored: there is no one to tell.
    pub fn send(self, response_out: ResponseOutparam) {
        let (response, body) = match self.to_outgoing() {
            Some(response) => (response, self.body),
            None => {
                let fallback = Response::text(500, "the application built an invalid response\n");
                match fallback.to_outgoing() {
                    Some(response) => (response, fallback.body),
                    None => return,
                }
            }
        };
        let Ok(outgoing_body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        let Ok(mut stream) = outgoing_body.write() else {
            return;
        };
        if stream.write_all(&body).is_err() || stream.flush().is_err() {
            // Dropping the body unfinished tells the host the response broke.
            return;
        }
        drop(stream);
        let _ = OutgoingBody::finish(outgoing_body, None);
    }

    /// The `wasi:http` response head, with `content-length` added unless set;
    /// `None` if the status or a header is invalid.
    fn to_outgoing(&self) -> Option<OutgoingResponse> {
        let fields = Fields::from_list(&self.headers).ok()?;
        if !fields.has("content-length") {
            let len = self.body.len().to_string();
            fields.append("content-length", len.as_bytes()).ok()?;
        }
        let response = OutgoingResponse::new(fields);
        response.set_status_code(self.status).ok()?;
        Some(response)
    }
}

/// A string that is not valid percent-encoded UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEncoding;

impl fmt::Display for InvalidEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid percent-encoding or not UTF-8")
    }
}

impl std::error::Error for InvalidEncoding {}

/// Decodes `%XX` escapes (as in a URL path) and checks the result is UTF-8.
/// `+` is kept as is.
pub fn percent_decode(s: &str) -> Result<String, InvalidEncoding> {
    decode(s, false)
}

/// The first value of `name` in a query string, decoded as a form value.
fn query_param(query: &str, name: &str) -> Option<Result<String, InvalidEncoding>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_form(k).as_deref() == Ok(name)).then(|| decode_form(v))
    })
}

fn decode_form(s: &str) -> Result<String, InvalidEncoding> {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> Result<String, InvalidEncoding> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex).ok_or(InvalidEncoding)?;
                let lo = bytes.next().and_then(hex).ok_or(InvalidEncoding)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| InvalidEncoding)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c+d").unwrap(), "a/b c+d");
        assert_eq!(percent_decode("caf%C3%A9").unwrap(), "café");
        assert_eq!(percent_decode("%e2%82%ac").unwrap(), "€");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        assert_eq!(percent_decode("%"), Err(InvalidEncoding));
        assert_eq!(percent_decode("%4"), Err(InvalidEncoding));
        assert_eq!(percent_decode("%zz"), Err(InvalidEncoding));
        assert_eq!(percent_decode("%FF"), Err(InvalidEncoding));
    }

    #[test]
    fn query_params() {
        let q = "a=1&by=-5&by=7&flag&sp=x+y%21";
        assert_eq!(query_param(q, "by"), Some(Ok("-5".to_owned())));
        assert_eq!(query_param(q, "a"), Some(Ok("1".to_owned())));
        assert_eq!(query_param(q, "flag"), Some(Ok(String::new())));
        assert_eq!(query_param(q, "sp"), Some(Ok("x y!".to_owned())));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("by=%ZZ", "by"), Some(Err(InvalidEncoding)));
        assert_eq!(query_param("", "by"), None);
    }

    #[test]
    fn store_errors_get_the_shared_statuses() {
        let status = |e: Error| Response::error(&e).status();
        assert_eq!(status(Error::InvalidKey("empty".into())), 400);
        assert_eq!(status(Error::InvalidArgument("not a number".into())), 400);
        assert_eq!(status(Error::KeyNotFound), 404);
        assert_eq!(status(Error::ValueTooLarge(1)), 413);
        assert_eq!(status(Error::RateLimited(1)), 429);
        assert_eq!(status(Error::QuotaExceeded("keys".into())), 429);
        assert_eq!(status(Error::StoreNotAvailable("disk".into())), 503);
        assert_eq!(status(Error::KeyAlreadyExists), 409);
        assert_eq!(status(Error::VersionMismatch(Some(2))), 409);
        assert_eq!(status(Error::AccessDenied), 403);
        let limited = Response::error(&Error::RateLimited(1500));
        assert!(
            limited
                .headers()
                .contains(&("retry-after".to_owned(), b"2".to_vec()))
        );
    }

    #[test]
    fn response_builders() {
        let r = Response::text(201, "made").with_header("x-a", "b");
        assert_eq!(r.status(), 201);
        assert_eq!(r.body(), b"made");
        assert_eq!(
            r.headers(),
            [
                (
                    "content-type".to_owned(),
                    b"text/plain; charset=utf-8".to_vec()
                ),
                ("x-a".to_owned(), b"b".to_vec()),
            ]
        );
        assert_eq!(
            Response::bytes(200, vec![0, 1]).headers()[0].1,
            b"application/octet-stream"
        );
    }
}
