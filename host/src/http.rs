//! Small HTTP helpers shared by the server, the REST API, the admin UI, the
//! runtime and the client: response bodies, and percent-encoding.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use serde::Serialize;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The body of every response the host sends.
pub type ResponseBody = HyperOutgoingBody;

/// A response body holding `bytes`, all at once.
pub fn full_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How long a streamed response's head waits for its body's first frame:
/// see [`empty_body_known`].
const FIRST_FRAME_PATIENCE: Duration = Duration::from_millis(250);

/// `response`, with its body marked empty if it is. A guest's body comes
/// as a stream of unknown length, which hyper sends chunked even when it
/// is empty; Spin apps expect a bodiless answer to carry `content-length:
/// 0` (hyper writes it for a body known to be empty, unless the status
/// has no body, such as 204 or 304). So the head waits for the body's
/// first frame or its end, but only briefly: a guest that streams (server
/// -sent events, say) must not hold its head back.
pub async fn empty_body_known(
    response: hyper::Response<ResponseBody>,
) -> hyper::Response<ResponseBody> {
    let headers = response.headers();
    if headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING)
        || response.body().is_end_stream()
    {
        return response;
    }
    let (parts, mut body) = response.into_parts();
    let body = match tokio::time::timeout(FIRST_FRAME_PATIENCE, body.frame()).await {
        Ok(None) => full_body(Bytes::new()),
        Ok(Some(first)) => FirstThenRest {
            first: Some(first),
            rest: body,
        }
        .boxed_unsync(),
        Err(_) => body,
    };
    hyper::Response::from_parts(parts, body)
}

/// A body whose first frame was already taken from `rest`.
struct FirstThenRest {
    first: Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>,
    rest: ResponseBody,
}

impl Body for FirstThenRest {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(first)),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// A plain-text response from the host itself.
pub fn text_response(status: u16, text: impl Into<String>) -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full_body(text.into()))
        .expect("a valid status and header")
}

/// A `503` that asks the client to come back in a second.
pub fn retry_later(text: impl Into<String>) -> hyper::Response<ResponseBody> {
    let mut response = text_response(503, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// `body` as a JSON response.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full_body(
            serde_json::to_vec(body).expect("wire types serialize"),
        ))
        .expect("a valid response")
}

/// Percent-encodes one path segment (or query value): everything but
/// unreserved characters.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` unless the result is UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The first value of `name` in a query string or form, decoded (`+` is a
/// space): `None` if absent, `Some(None)` if it does not decode to UTF-8.
pub fn query_param(query: Option<&str>, name: &str) -> Option<Option<String>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_bad_escapes_are_refused() {
        for text in ["a/b c", "café", "100%", "..", "k=v&x"] {
            assert_eq!(percent_decode(&encode_segment(text)).as_deref(), Some(text));
        }
        assert_eq!(encode_segment("a b/€"), "a%20b%2F%E2%82%AC");
        for bad in ["%", "%4", "%zz", "%FF"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        let q = Some("a=1&sp=x+y%21&bad=%FF&flag");
        assert_eq!(query_param(q, "sp"), Some(Some("x y!".into())));
        assert_eq!(query_param(q, "flag"), Some(Some(String::new())));
        assert_eq!(query_param(q, "bad"), Some(None));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "a"), None);
    }
}
