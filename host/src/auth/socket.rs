//! The credentials socket: how `ostore credentials` reaches the host that
//! holds a data directory's database.
//!
//! The database file is open in one process at a time, so while a host
//! runs, the command cannot open the backend itself. The host therefore
//! listens on a Unix socket in its data directory
//! ([`DataDir::credentials_socket`](crate::host::DataDir::credentials_socket)),
//! and the command asks it to make, list or delete credentials, which it
//! does in the backend as for any caller.
//!
//! Who is obeyed: the socket file is its owner's only (mode 0600), and
//! every request carries an HMAC under a key derived from the master key,
//! so only who holds the master key (who could open the backend itself)
//! can use it. A request is one line of JSON, the answer another. A
//! replayed request would need its bytes, which only the socket's owner can
//! see; the answers (a new secret among them) go only to the peer that
//! asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::{AuthError, CredentialInfo, Credentials, NewCredential, Principal, Scope, socket_mac};
use crate::encryption::MasterKey;

/// The longest request a host reads: requests are a few hundred bytes, and
/// the bound keeps a peer from growing a buffer without end.
const MAX_REQUEST: u64 = 64 << 10;
/// The longest answer a client reads (a list of many credentials).
const MAX_ANSWER: u64 = 16 << 20;
/// How long a host waits for a request's line, so that a peer that
/// connects and says nothing does not hold a task for ever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the command waits for the host's answer (a backend write).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Create {
        principal: Principal,
        scopes: Vec<Scope>,
    },
    Delete {
        client_id: String,
    },
    List,
}

/// A request with its HMAC: `request` is the JSON of a [`Request`], kept as
/// text so that the MAC covers exactly the bytes that are parsed.
#[derive(Serialize, Deserialize)]
struct Signed {
    request: String,
    mac: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Created(NewCredential),
    Deleted(bool),
    Listed(Vec<CredentialInfo>),
    Refused(String),
}

fn sign(key: &Hmac<Sha256>, request: &str) -> String {
    let mut mac = key.clone();
    mac.update(request.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Reads one line of at most `limit` bytes within `patience`; `None` if the
/// peer sent nothing, took too long, or failed.
async fn read_line(
    reader: impl AsyncRead + Unpin,
    limit: u64,
    patience: Duration,
) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(reader.take(limit));
    match tokio::time::timeout(patience, reader.read_until(b'\n', &mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(line),
        _ => None,
    }
}

/// A host's credentials socket, being served. Dropping it stops serving
/// and removes the socket file.
pub(crate) struct SocketServer {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SocketServer {
    /// Serves the credentials socket at `path` with `credentials`.
    ///
    /// A socket file already there is removed first: it can only be left
    /// by a host that stopped without removing it, since the caller holds
    /// the data directory's database, which one process at a time may.
    pub(crate) fn start(path: &Path, credentials: Arc<Credentials>) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, credentials, stopped));
        Ok(Self {
            path: path.to_path_buf(),
            stop: Some(stop),
            task,
        })
    }

    /// Stops serving: requests under way are cut off (a change either
    /// committed or did not), and every handle on the credentials is let go.
    pub(crate) async fn stop(mut self) {
        self.stop.take();
        let _ = (&mut self.task).await;
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    listener: UnixListener,
    credentials: Arc<Credentials>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(answer_connection(stream, credentials.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("credentials socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn answer_connection(stream: UnixStream, credentials: Arc<Credentials>) {
    let (reader, mut writer) = stream.into_split();
    // A peer that connects and says nothing is the command checking that a
    // host listens.
    let Some(line) = read_line(reader, MAX_REQUEST, REQUEST_TIMEOUT).await else {
        return;
    };
    let answer = answer(&credentials, &line).await;
    let mut out = serde_json::to_vec(&answer).expect("an answer serializes");
    out.push(b'\n');
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, writer.write_all(&out)).await;
}

async fn answer(credentials: &Credentials, line: &[u8]) -> Answer {
    let Ok(signed) = serde_json::from_slice::<Signed>(line) else {
        return Answer::Refused("malformed request".into());
    };
    let signature_holds = URL_SAFE_NO_PAD.decode(&signed.mac).is_ok_and(|mac| {
        let mut check = credentials.socket_key.clone();
        check.update(signed.request.as_bytes());
        check.verify_slice(&mac).is_ok()
    });
    if !signature_holds {
        tracing::warn!("credentials socket: refused a request not signed with the master key");
        return Answer::Refused(
            "the request is not signed with this data directory's master key".into(),
        );
    }
    let Ok(request) = serde_json::from_str::<Request>(&signed.request) else {
        return Answer::Refused("malformed request".into());
    };
    let done = match request {
        Request::Create { principal, scopes } => {
            credentials.create(principal, scopes).await.map(|new| {
                tracing::info!(client_id = %new.client_id, "credential made through the credentials socket");
                Answer::Created(new)
            })
        }
        Request::Delete { client_id } => credentials.delete(&client_id).await.map(|existed| {
            if existed {
                tracing::info!(%client_id, "credential deleted through the credentials socket");
            }
            Answer::Deleted(existed)
        }),
        Request::List => credentials.list().await.map(Answer::Listed),
    };
    done.unwrap_or_else(|e| Answer::Refused(e.to_string()))
}

/// A running host's credentials socket, as `ostore credentials` uses it:
/// each call is one request on a connection of its own.
pub struct HostCredentials {
    path: PathBuf,
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for HostCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCredentials")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HostCredentials {
    /// The host serving the credentials socket at `path`, whose requests
    /// are signed with `master`; `None` if no host listens there (no
    /// socket file, or one left by a host that is gone).
    pub async fn find(path: &Path, master: &MasterKey) -> Option<Self> {
        UnixStream::connect(path).await.ok()?;
        Some(Self {
            path: path.to_path_buf(),
            key: socket_mac(master),
        })
    }

    async fn ask(&self, request: &Request) -> Result<Answer, AuthError> {
        let failed = |e: &dyn std::fmt::Display| {
            AuthError::Host(format!("credentials socket {}: {e}", self.path.display()))
        };
        let request = serde_json::to_string(request).expect("a request serializes");
        let signed = Signed {
            mac: sign(&self.key, &request),
            request,
        };
        let mut line = serde_json::to_vec(&signed).expect("a request serializes");
        line.push(b'\n');
        let mut stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| failed(&e))?;
        stream.write_all(&line).await.map_err(|e| failed(&e))?;
        let answer = read_line(stream, MAX_ANSWER, ANSWER_TIMEOUT)
            .await
            .ok_or_else(|| failed(&"no answer"))?;
        match serde_json::from_slice(&answer).map_err(|e| failed(&e))? {
            Answer::Refused(why) => Err(AuthError::Host(why)),
            answer => Ok(answer),
        }
    }

    fn unexpected(&self) -> AuthError {
        AuthError::Host(format!(
            "credentials socket {}: an answer to another request",
            self.path.display()
        ))
    }

    /// Makes a credential on the host.
    pub async fn create(
        &self,
        principal: Principal,
        scopes: Vec<Scope>,
    ) -> Result<NewCredential, AuthError> {
        match self.ask(&Request::Create { principal, scopes }).await? {
            Answer::Created(new) => Ok(new),
            _ => Err(self.unexpected()),
        }
    }

    /// Deletes a credential on the host; says whether it existed.
    pub async fn delete(&self, client_id: &str) -> Result<bool, AuthError> {
        let request = Request::Delete {
            client_id: client_id.to_string(),
        };
        match self.ask(&request).await? {
            Answer::Deleted(existed) => Ok(existed),
            _ => Err(self.unexpected()),
        }
    }

    /// Every credential, from the host.
    pub async fn list(&self) -> Result<Vec<CredentialInfo>, AuthError> {
        match self.ask(&Request::List).await? {
            Answer::Listed(all) => Ok(all),
            _ => Err(self.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::objectstore::ObjectStore;

    #[tokio::test]
    async fn the_socket_obeys_the_master_key_only() {
        let dir = std::env::temp_dir().join(format!(
            "ostore-socket-{}",
            crate::encryption::hex(&crate::encryption::random_array::<8>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials.sock");
        let master = MasterKey::generate();
        let objectstore =
            ObjectStore::open(Arc::new(MemoryBackend::new()), &master, Default::default())
                .await
                .unwrap();
        let credentials = Arc::new(Credentials::new(
            &objectstore,
            &master,
            Duration::from_secs(60),
            crate::clock::system(),
        ));
        // A socket file left behind is replaced.
        std::fs::write(&path, b"stale").unwrap();
        let server = SocketServer::start(&path, credentials.clone()).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let host = HostCredentials::find(&path, &master).await.unwrap();
        let new = host
            .create(Principal::Admin, vec![Scope::ReadStore])
            .await
            .unwrap();
        // Made in the host's backend: the host issues tokens for it.
        assert!(
            credentials
                .issue_token(&new.client_id, &new.client_secret)
                .await
                .is_ok()
        );
        let listed = host.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_id, new.client_id);

        // Requests signed with another key change nothing.
        let stranger = HostCredentials::find(&path, &MasterKey::generate())
            .await
            .unwrap();
        assert!(matches!(
            stranger.delete(&new.client_id).await,
            Err(AuthError::Host(why)) if why.contains("not signed")
        ));
        assert!(stranger.list().await.is_err());
        assert_eq!(credentials.list().await.unwrap().len(), 1);

        assert!(host.delete(&new.client_id).await.unwrap());
        assert!(!host.delete(&new.client_id).await.unwrap());
        assert!(credentials.list().await.unwrap().is_empty());

        // Stopped: the socket file is gone, and no host is found.
        server.stop().await;
        assert!(!path.exists());
        assert!(HostCredentials::find(&path, &master).await.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
