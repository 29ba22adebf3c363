//! A small client of the REST and Stats APIs, for the `ostore kv`,
//! `stores`, `partitions` and `stats` commands: it speaks the
//! [wire types](crate::api::wire) the server sends.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::TOKEN_PATH;
use crate::api::wire::{ErrorBody, Page, TokenRequest, TokenResponse};
use crate::http::encode_segment;

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
    #[error("bad server URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("cannot read the certificate {}: {source}", path.display())]
    Certificate {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {server} failed: {source}")]
    Tls {
        server: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("HTTP exchange with {server} failed: {source}")]
    Http {
        server: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the server's answer is not what the API sends: {0}")]
    Decode(#[source] serde_json::Error),
}

/// The percent-encoded paths of one environment's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentPaths {
    /// `/api/v1/organizations/{org}/environments/{env}`
    env: String,
    org: String,
    env_name: String,
}

impl EnvironmentPaths {
    pub fn new(org: &str, env: &str) -> Self {
        Self {
            env: format!(
                "/api/v1/organizations/{}/environments/{}",
                encode_segment(org),
                encode_segment(env)
            ),
            org: org.into(),
            env_name: env.into(),
        }
    }

    pub fn stores(&self) -> String {
        format!("{}/stores", self.env)
    }

    pub fn store(&self, store: &str) -> String {
        format!("{}/{}", self.stores(), encode_segment(store))
    }

    pub fn partitions(&self, store: &str) -> String {
        format!("{}/partitions", self.store(store))
    }

    pub fn partition(&self, store: &str, partition: &str) -> String {
        format!("{}/{}", self.partitions(store), encode_segment(partition))
    }

    pub fn keys(&self, store: &str, partition: &str) -> String {
        format!("{}/keys", self.partition(store, partition))
    }

    pub fn key(&self, store: &str, partition: &str, key: &str) -> String {
        format!("{}/{}", self.keys(store, partition), encode_segment(key))
    }

    pub fn usage(&self) -> String {
        format!("{}/usage", self.env)
    }

    /// The Stats API path of the environment, or of one store of it.
    pub fn stats(&self, store: Option<&str>) -> String {
        let env = format!(
            "/api/v1/stats/organizations/{}/environments/{}",
            encode_segment(&self.org),
            encode_segment(&self.env_name)
        );
        match store {
            Some(store) => format!("{env}/stores/{}", encode_segment(store)),
            None => env,
        }
    }
}

/// `path` with `name=value` appended to its query, the value encoded.
pub fn with_query(path: &str, name: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{name}={}", encode_segment(value))
}

impl Client {
    /// A client of the server at `base` (`http://` or `https://`). For
    /// HTTPS, the server's certificate must chain to `ca_file` if given,
    /// else to the well-known public roots.
    pub fn new(base: &str, ca_file: Option<&Path>) -> Result<Self, ClientError> {
        let bad_url = |why: String| ClientError::Url {
            url: base.into(),
            why,
        };
        let uri: Uri = base
            .trim_end_matches('/')
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad_url(e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("https") => Some(tls_connector(ca_file)?),
            Some("http") => None,
            _ => return Err(bad_url("it must start with http:// or https://".into())),
        };
        if uri.host().is_none() {
            return Err(bad_url("it has no host".into()));
        }
        Ok(Self {
            base: uri,
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
        let request = TokenRequest::client_credentials(client_id, client_secret);
        let answer: TokenResponse = self.send_json(Method::POST, TOKEN_PATH, &request).await?;
        Ok(self.with_token(answer.access_token))
    }

    /// `GET` of a JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(&self.send(Method::GET, path, None).await?)
    }

    /// Every page of a listing.
    pub async fn all_pages<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ClientError> {
        let first = with_query(path, "pageSize", "1000");
        let mut values = Vec::new();
        let mut url = first.clone();
        loop {
            let page: Page<T> = self.get(&url).await?;
            values.extend(page.values);
            match page.next_page_token {
                Some(token) => url = with_query(&first, "nextPageToken", &token),
                None => return Ok(values),
            }
        }
    }

    /// Sends `body` as JSON and reads the JSON answer.
    pub async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).expect("wire types serialize");
        decode(&self.send(method, path, Some(body.into())).await?)
    }

    /// `DELETE`, expecting no answer.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, path, None).await.map(drop)
    }

    /// Sends one request; returns the body of a 2xx answer, and the
    /// server's message otherwise.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, ClientError> {
        let server = self.base.to_string();
        let host = self.base.host().expect("checked when made");
        let https = self.tls.is_some();
        let port = self.base.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|source| ClientError::Connect {
                server: server.clone(),
                source,
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
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Url {
                url: format!("{server}{path_and_query}"),
                why: e.to_string(),
            })?;
        let http_error = |source| ClientError::Http {
            server: server.clone(),
            source,
        };
        let response = match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| ClientError::Tls {
                        server: server.clone(),
                        source: e.into(),
                    })?;
                let stream = tls.connect(name, tcp).await.map_err(|e| ClientError::Tls {
                    server: server.clone(),
                    source: e.into(),
                })?;
                exchange(hyper_util::rt::TokioIo::new(stream), request).await
            }
            None => exchange(hyper_util::rt::TokioIo::new(tcp), request).await,
        }
        .map_err(http_error)?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(http_error)?
            .to_bytes();
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => body.message,
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        };
        Err(ClientError::Status { status, message })
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(ClientError::Decode)
}

/// A TLS connector that trusts `ca_file`, or the well-known public roots.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Certificate {
                path: path.to_path_buf(),
                source,
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.into()))? {
                roots
                    .add(cert.map_err(|e| bad(e.into()))?)
                    .map_err(|e| bad(e.into()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn exchange<IO>(
    io: IO,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    sender.send_request(request).await
}
