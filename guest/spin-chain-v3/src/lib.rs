//! spin-chain's twin on spin-sdk 7 (`wasi:http/handler@0.3`): self requests
//! and service chaining sent through WASIp3's `wasi:http/client`. Below its
//! route (by `spin-path-info`):
//!
//! | path | answer |
//! |---|---|
//! | `/call?url=URL` | GET `URL` (percent-encoded), answered with its status and body; 502 `error: ...` if the request fails |
//! | `/recurse` | GET `http://self/chain3/recurse` (a self request), answered with its status and `hop ` before its body |

use bytes::Bytes;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, Request, Response};
use spin_sdk::http_service;

type Reply = Response<FullBody<Bytes>>;

#[http_service]
async fn handle(request: Request) -> Reply {
    let path = request
        .headers()
        .get("spin-path-info")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    match path.as_str() {
        "/call" => match query_param(&query, "url") {
            Some(url) => call(&url, "").await,
            None => reply(400, "give ?url="),
        },
        "/recurse" => call("http://self/chain3/recurse", "hop ").await,
        _ => reply(404, format!("spin-chain-v3 does not serve {path}")),
    }
}

/// GETs `url`: its status, and its body after `prefix`; 502 with the error
/// if the request fails.
async fn call(url: &str, prefix: &str) -> Reply {
    let request = match Request::<()>::builder()
        .uri(url)
        .body(FullBody::new(Bytes::new()))
    {
        Ok(request) => request,
        Err(e) => return reply(400, format!("{prefix}bad url: {e}")),
    };
    match spin_sdk::http::send(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().bytes().await {
                Ok(body) => {
                    let mut out = prefix.as_bytes().to_vec();
                    out.extend_from_slice(&body);
                    reply(status, out)
                }
                Err(e) => reply(502, format!("{prefix}error reading the body: {e:?}")),
            }
        }
        Err(e) => reply(502, format!("{prefix}error: {e:?}")),
    }
}

fn reply(status: u16, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .body(FullBody::new(body.into()))
        .expect("a valid status and no headers")
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
