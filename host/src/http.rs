//! Small HTTP helpers shared by the server, the REST API, the admin UI, the
//! runtime and the client: response bodies, and percent-encoding.

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
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
