//! The smallest `ostore` guest: answers every request with `hello, world`.
//! It touches no store, so it measures the host's per-request floor.

use ostore_sdk::http::{Handler, Request, Response};

struct Hello;

impl Handler for Hello {
    fn handle(_request: Request) -> Response {
        Response::text(200, "hello, world")
    }
}

ostore_sdk::http::export!(Hello);
