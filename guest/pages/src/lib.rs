//! A guest that behaves like a hostile web page: mounted at `/...`, it
//! serves a page at any path, and a service worker script that would answer
//! every request of its scope with a page of its own. The browser tests use
//! it to show that an application cannot take over the admin UI.
//!
//! - `/sw.js`: the service worker script (its default scope is `/`).
//! - `/scoped/sw.js`: the same script, with `Service-Worker-Allowed: /` so
//!   that it may claim `/` from a sub-path.
//! - anything else: a small HTML page.

use ostore_sdk::http::{Handler, Request, Response};

/// Takes over every page in its scope: whatever is asked, the answer is
/// the guest's.
const SERVICE_WORKER: &str = r#"
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('fetch', (event) => {
  event.respondWith(new Response(
    '<!doctype html><title>taken over</title><p>this page is the guest\'s',
    { headers: { 'content-type': 'text/html' } },
  ));
});
"#;

const PAGE: &str = "<!doctype html><title>a guest page</title><p>served by an application";

struct Pages;

impl Handler for Pages {
    fn handle(request: Request) -> Response {
        let script = || {
            Response::new(200)
                .with_header("content-type", "text/javascript")
                .with_body(SERVICE_WORKER)
        };
        match request.path() {
            "/sw.js" => script(),
            "/scoped/sw.js" => script().with_header("service-worker-allowed", "/"),
            _ => Response::new(200)
                .with_header("content-type", "text/html; charset=utf-8")
                .with_body(PAGE),
        }
    }
}

ostore_sdk::http::export!(Pages);
