//! A deliberately badly behaved guest, for the host's robustness tests.
//!
//! * `GET /misbehave/loop` spins forever; the host must interrupt it.
//! * `GET /misbehave/trap` panics, which traps the instance.
//! * `GET /misbehave/ok` answers 200 `ok`, to show the host still serves.
//!
//! Other paths answer 404, other methods on these paths 405.

use std::hint::black_box;

use ostore_sdk::http::{Handler, Method, Request, Response};

struct Misbehave;

impl Handler for Misbehave {
    fn handle(request: Request) -> Response {
        let action = match request.path() {
            "/misbehave/loop" => spin,
            "/misbehave/trap" => trap,
            "/misbehave/ok" => ok,
            _ => return Response::text(404, "no such route\n"),
        };
        if !matches!(request.method(), Method::Get) {
            return Response::text(405, "method not allowed\n").with_header("allow", "GET");
        }
        action()
    }
}

/// Never returns: `black_box` hides the counter from the optimiser, so the
/// loop really executes instructions.
fn spin() -> Response {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn trap() -> Response {
    panic!("misbehave: deliberate trap");
}

fn ok() -> Response {
    Response::text(200, "ok")
}

ostore_sdk::http::export!(Misbehave);
