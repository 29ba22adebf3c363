//! The admin web UI, served at `/admin/`: one page that signs in with
//! client credentials and then works only through the REST and Stats APIs,
//! so it can do no more than the credential it signed in with.
//!
//! Its files (the page, its style sheet and its JavaScript modules) are
//! compiled into the binary; the page loads nothing from
//! anywhere else, and its Content-Security-Policy forbids it to.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::encryption::hex;
use crate::http::{ResponseBody, full_body, text_response};

/// Where the UI lives. `/admin` itself redirects to `/admin/`.
pub const PATH: &str = "/admin/";

/// What the page may load and where it may connect: its own files and
/// API, nothing else; no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// A JavaScript module of the UI.
macro_rules! module {
    ($file:literal) => {
        Asset {
            path: concat!("/admin/", $file),
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!($file),
        }
    };
}

/// The page, its style, and its modules (`app.js` imports the others).
const ASSETS: &[Asset] = &[
    Asset {
        path: PATH,
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("index.html"),
    },
    Asset {
        path: "/admin/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("app.css"),
    },
    module!("app.js"),
    module!("api.js"),
    module!("dom.js"),
    module!("format.js"),
    module!("usage.js"),
    module!("value.js"),
    module!("views.js"),
    module!("widgets.js"),
];

/// Whether `path` belongs to the UI rather than to a guest route.
pub fn serves(path: &str) -> bool {
    path == "/admin" || path.starts_with(PATH)
}

/// Answers a request for one of the UI's files.
pub fn handle<B>(req: &hyper::Request<B>) -> hyper::Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text_response(405, "the admin UI answers GET and HEAD");
        response
            .headers_mut()
            .insert(header::ALLOW, "GET, HEAD".parse().expect("valid"));
        return response;
    }
    let path = req.uri().path();
    if path == "/admin" {
        return hyper::Response::builder()
            .status(StatusCode::PERMANENT_REDIRECT)
            .header(header::LOCATION, PATH)
            .body(empty())
            .expect("a valid response");
    }
    // `/admin/index.html` is the page too.
    let path = if path == "/admin/index.html" {
        PATH
    } else {
        path
    };
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return text_response(404, format!("the admin UI has no file {path}"));
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let builder = hyper::Response::builder()
        .header(header::ETAG, etag.as_str())
        // Revalidate every time, so that a new binary's files are used at
        // once; the ETag makes that a 304.
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::X_FRAME_OPTIONS, "DENY")
        // A window that an application's page opens gets no handle on the
        // UI's window, and the other way round.
        .header("cross-origin-opener-policy", "same-origin")
        .header(header::REFERRER_POLICY, "no-referrer");
    let response = if unchanged {
        builder.status(StatusCode::NOT_MODIFIED).body(empty())
    } else {
        let body = if req.method() == Method::HEAD {
            empty()
        } else {
            full_body(Bytes::from_static(asset.body))
        };
        builder
            .header(header::CONTENT_TYPE, asset.content_type)
            .header(header::CONTENT_LENGTH, asset.body.len())
            .body(body)
    };
    response.expect("a valid response")
}

/// A strong ETag per asset, from its content.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex(&Sha256::digest(a.body)[..12])))
            .collect()
    })
}

fn empty() -> ResponseBody {
    full_body(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, etag: Option<&str>) -> hyper::Response<ResponseBody> {
        let mut req = hyper::Request::get(path);
        if let Some(etag) = etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        handle(&req.body(()).unwrap())
    }

    #[test]
    fn files_are_served_with_a_strict_policy_and_revalidated_by_etag() {
        let page = get("/admin/", None);
        assert_eq!(page.status(), 200);
        let headers = page.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        let etag = headers[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(get("/admin/", Some(&etag)).status(), 304);
        assert_eq!(get("/admin/", Some("\"other\"")).status(), 200);

        assert_eq!(get("/admin/app.js", None).status(), 200);
        for module in ["api", "dom", "format", "usage", "value", "views", "widgets"] {
            let answer = get(&format!("/admin/{module}.js"), None);
            assert_eq!(answer.status(), 200, "{module}.js");
            assert_eq!(
                answer.headers()[header::CONTENT_TYPE],
                "text/javascript; charset=utf-8"
            );
        }
        assert_eq!(get("/admin/app.css", None).status(), 200);
        assert_eq!(get("/admin/index.html", None).status(), 200);
        assert_eq!(get("/admin/../api/v1", None).status(), 404);
        assert_eq!(get("/admin/missing.js", None).status(), 404);
        let redirect = get("/admin", None);
        assert_eq!(redirect.status(), 308);
        assert_eq!(redirect.headers()[header::LOCATION], "/admin/");
        let post = handle(&hyper::Request::post("/admin/").body(()).unwrap());
        assert_eq!(post.status(), 405);
    }
}
