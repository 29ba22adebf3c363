//! A Spin app (spin-sdk 5.2) that sends requests to its own application:
//! self requests and service chaining, as Spin apps send them. Below its
//! route (by `spin-path-info`):
//!
//! | path | answer |
//! |---|---|
//! | `/call?url=URL` | GET `URL` (percent-encoded), answered with its status and body; 502 `error: ...` if the request fails |
//! | `/recurse` | GET `/chain/recurse` (a path-only self request), answered with its status and `hop ` before its body |
//! | `/empty` | 200 without a body |
//! | `/status/N` | status N without a body |
//! | `/env/NAME` | the environment variable NAME; 404 if unset |
//! | `/kv/KEY` | KEY in the `default` key-value store; 404 if absent |

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(request: Request) -> Response {
    let path = request
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next().unwrap_or_default(), parts.next()) {
        ("call", None) => match query_param(request.query(), "url") {
            Some(url) => call(&url, ""),
            None => Response::new(400, "give ?url="),
        },
        ("recurse", None) => call("/chain/recurse", "hop "),
        ("empty", None) => Response::new(200, ()),
        ("status", Some(n)) => match n.parse::<u16>() {
            Ok(n) => Response::new(n, ()),
            Err(_) => Response::new(400, "not a status"),
        },
        ("env", Some(name)) => match std::env::var(name) {
            Ok(value) => Response::new(200, value),
            Err(_) => Response::new(404, ()),
        },
        ("kv", Some(key)) => match Store::open_default().and_then(|s| s.get(key)) {
            Ok(Some(value)) => Response::new(200, value),
            Ok(None) => Response::new(404, ()),
            Err(e) => Response::new(500, e.to_string()),
        },
        _ => Response::new(404, format!("spin-chain does not serve {path}")),
    }
}

/// GETs `url`: its status, and its body after `prefix`; 502 with the error
/// if the request fails.
fn call(url: &str, prefix: &str) -> Response {
    let request = Request::get(url).build();
    match spin_sdk::http::run(spin_sdk::http::send::<_, Response>(request)) {
        Ok(response) => {
            let mut body = prefix.as_bytes().to_vec();
            body.extend_from_slice(response.body());
            Response::new(*response.status(), body)
        }
        Err(e) => Response::new(502, format!("{prefix}error: {e:?}")),
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}
