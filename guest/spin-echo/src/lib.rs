//! A Spin app (spin-sdk 5.2) that answers with what it was given: its URI,
//! then one `name: value` line per request header, in the order received.
//! Tests use it to see the request exactly as a Spin component sees it.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
    let mut text = format!("uri: {}\n", request.uri());
    for (name, value) in request.headers() {
        let value = value.as_str().unwrap_or("<not UTF-8>");
        text.push_str(&format!("{name}: {value}\n"));
    }
    Response::builder()
        .status(200)
        .header("content-type", "text/plain; charset=utf-8")
        .body(text)
        .build()
}
