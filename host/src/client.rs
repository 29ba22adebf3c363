//! A small client of the REST and Stats APIs, for the `ostore kv`,
//! `stores`, `partitions` and `stats` commands.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// Connection settings of the client.
pub struct Client {
    base: Uri,
    tls: Option<tokio_rustls::TlsConnector>,
    token: Option<String>,
}

/// A failed call: what the server said, or why it could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{status}: {message}")]
    Status { status: u16, message: String },
    #[error("{0}")]
    Connection(String),
}

fn connection(e: impl std::fmt::Display) -> ClientError {
    ClientError::Connection(e.to_string())
}

/// Percent-encodes one path segment.
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

impl Client {
    /// A client of the server at `base` (`http://` or `https://`). For
    /// HTTPS, the server's certificate must chain to `ca_file` if given,
    /// else to the well-known public roots.
    pub fn new(base: &str, ca_file: Option<&Path>) -> Result<Self, ClientError> {
        let base: Uri = base
            .trim_end_matches('/')
            .parse()
            .map_err(|e| ClientError::Connection(format!("bad server URL {base:?}: {e}")))?;
        let tls = match base.scheme_str() {
            Some("https") => {
                let mut roots = rustls::RootCertStore::empty();
                match ca_file {
                    Some(path) => {
                        for cert in CertificateDer::pem_file_iter(path).map_err(connection)? {
                            roots.add(cert.map_err(connection)?).map_err(connection)?;
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(connection)?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            Some("http") => None,
            _ => {
                return Err(ClientError::Connection(
                    "the server URL must start with http:// or https://".into(),
                ));
            }
        };
        Ok(Self {
            base,
            tls,
            token: None,
        })
    }

    /// Uses `token` as the bearer token of later calls.
    pub fn with_token(mut self, token: String) -> Self {
        self.token = Some(token);
        self
    }

    /// Exchanges client credentials for a token.
    pub async fn login(self, client_id: &str, client_secret: &str) -> Result<Self, ClientError> {
        let body = serde_json::json!({
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "client_credentials",
        });
        let answer = self
            .call(
                Method::POST,
                crate::api::TOKEN_PATH,
                None,
                Some(body.to_string().into()),
            )
            .await?;
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| {
                ClientError::Connection("the token endpoint sent no access_token".into())
            })?
            .to_string();
        Ok(self.with_token(token))
    }

    /// Sends one request and returns the JSON answer (`Null` for none).
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        headers: Option<&[(&str, &str)]>,
        body: Option<Bytes>,
    ) -> Result<Value, ClientError> {
        let host = self
            .base
            .host()
            .ok_or_else(|| ClientError::Connection("the server URL has no host".into()))?;
        let https = self.tls.is_some();
        let port = self.base.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| {
                ClientError::Connection(format!("cannot connect to {}: {e}", self.base))
            })?;
        let _ = tcp.set_nodelay(true);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!(
                "{}{path_and_query}",
                self.base.path().trim_end_matches('/')
            ))
            .header("host", self.base.authority().map_or(host, |a| a.as_str()))
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers.unwrap_or_default() {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(connection)?;
        let response = match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(connection)?;
                let stream = tls.connect(name, tcp).await.map_err(connection)?;
                send(hyper_util::rt::TokioIo::new(stream), request).await?
            }
            None => send(hyper_util::rt::TokioIo::new(tcp), request).await?,
        };
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(connection)?
            .to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            let message = json["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| json.to_string());
            Err(ClientError::Status { status, message })
        }
    }
}

async fn send<IO>(
    io: IO,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection_task) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(connection)?;
    tokio::spawn(connection_task);
    sender.send_request(request).await.map_err(connection)
}
