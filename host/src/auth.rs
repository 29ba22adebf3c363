//! Client credentials, bearer tokens and scopes for the REST and Stats APIs.
//!
//! - A credential is a client id and a random secret, bound to one
//!   application (or, for an admin credential, to all of them) and a set of
//!   scopes. Only an HMAC of the secret is kept; the secret is shown once,
//!   when the credential is made.
//! - Credentials live in the backend, as host-wide records of the object
//!   store ([`ObjectStore::credentials`]): the client id only as a tag, the
//!   record sealed under the master key with its backend key as associated
//!   data. Every host sharing the backend therefore knows the same
//!   credentials: one made through any host (or by `ostore credentials`)
//!   gets tokens on all of them.
//! - `POST /accounts/api/v2/oauth2/token` exchanges a credential for a bearer
//!   token: the grant (client, application, scopes, expiry) with an HMAC
//!   under a key derived from the master key. Tokens therefore survive a
//!   restart, verify on every host with the same master key, and need no
//!   storage.
//! - **Revocation bound: none.** Every token check reads the credential's
//!   record from the backend (one `get`, no cache), so once a delete has
//!   committed, through any host, every host refuses the credential's tokens
//!   at their next use.
//! - Data directories of versions that kept credentials in a sealed file
//!   (`credentials.sealed`): the file's credentials are imported into the
//!   backend when the data directory is opened (by a host or by `ostore
//!   credentials`), each only if absent, and the file is then renamed to
//!   `credentials.sealed.imported`, so that a credential deleted later is not
//!   imported again.
//! - While a host holds a data directory's database, `ostore credentials`
//!   reaches that host through its [credentials socket](socket) instead.
//! - Secrets and tokens are never logged; `Debug` of the types holding them
//!   prints nothing secret.

mod import;
#[cfg(unix)]
pub mod socket;

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::SharedClock;
use crate::encryption::{MasterKey, hex, random_array};
use crate::objectstore::{self, CredentialRecords, ObjectStore};

pub use import::imported_path;

/// What a token allows, named as in OSv2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Read stores, partitions, keys and values.
    #[serde(rename = "read:store")]
    ReadStore,
    /// Write and delete keys, clear partitions.
    #[serde(rename = "manage:store_data")]
    ManageStoreData,
    /// Create, configure and delete stores and partitions.
    #[serde(rename = "manage:store")]
    ManageStore,
    /// Read usage statistics.
    #[serde(rename = "read:store_metrics")]
    ReadStoreMetrics,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::ReadStore,
        Scope::ManageStoreData,
        Scope::ManageStore,
        Scope::ReadStoreMetrics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadStore => "read:store",
            Scope::ManageStoreData => "manage:store_data",
            Scope::ManageStore => "manage:store",
            Scope::ReadStoreMetrics => "read:store_metrics",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whom a credential or token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    /// Every application.
    Admin,
    /// One application, by name.
    Application(String),
}

impl Principal {
    /// Whether this principal may touch `app`'s data.
    pub fn may_access(&self, app: &str) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Application(own) => own == app,
        }
    }
}

/// A token just issued, with what it grants.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub lifetime: Duration,
    pub scopes: Vec<Scope>,
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    pub principal: Principal,
    pub scopes: Vec<Scope>,
}

impl Grant {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a request was not authenticated, or a credential not made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no bearer token; get one at POST /accounts/api/v2/oauth2/token")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the credential behind this token was deleted")]
    Revoked,
    #[error("wrong client id or secret")]
    BadCredentials,
    /// The credentials file of an older version could not be imported.
    #[error("credentials file: {0}")]
    File(String),
    /// The backend failed; the request may be retried.
    #[error("credentials: {0}")]
    Storage(#[from] objectstore::Error),
    /// The host holding the data directory could not be asked, or refused.
    #[error("the running host: {0}")]
    Host(String),
}

/// What the backend keeps of a credential (sealed): never the secret itself.
/// Also the value type of the old credentials file, keyed by client id.
#[derive(Clone, Serialize, Deserialize)]
struct StoredCredential {
    principal: Principal,
    scopes: Vec<Scope>,
    /// HMAC-SHA256 of the secret under a key derived from the master key.
    secret_mac: [u8; 32],
}

impl StoredCredential {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a credential serializes")
    }

    /// Bytes that opened under the master key but do not parse are damage,
    /// reported like a record that fails its integrity check.
    fn decode(bytes: &[u8]) -> Result<Self, AuthError> {
        serde_json::from_slice(bytes).map_err(|_| AuthError::Storage(objectstore::Error::Integrity))
    }
}

/// A newly made credential. The secret is in here and nowhere else.
#[derive(Serialize, Deserialize)]
pub struct NewCredential {
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCredential")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A credential as listed (without anything secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialInfo {
    pub client_id: String,
    pub principal: Principal,
    pub scopes: Vec<Scope>,
}

/// The client credentials kept in an object store's backend, and the
/// tokens they are exchanged for. Every host sharing the backend sees the
/// same credentials; nothing is cached (see the [module](self) doc for the
/// revocation bound).
pub struct Credentials {
    records: CredentialRecords,
    secret_key: Hmac<Sha256>,
    token_key: Hmac<Sha256>,
    /// Signs requests to the credentials socket.
    #[cfg_attr(not(unix), allow(dead_code))]
    socket_key: Hmac<Sha256>,
    token_lifetime: Duration,
    /// When tokens expire is read off this clock.
    clock: SharedClock,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

fn derived_mac(master: &MasterKey, label: &[u8]) -> Hmac<Sha256> {
    let key = master.derive(label);
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key size")
}

/// The key that signs requests to a host's credentials socket.
#[cfg_attr(not(unix), allow(dead_code))]
fn socket_mac(master: &MasterKey) -> Hmac<Sha256> {
    derived_mac(master, b"ostore/v1/credentials-socket")
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Serialize, Deserialize)]
struct TokenClaims {
    /// Client id.
    c: String,
    p: Principal,
    s: Vec<Scope>,
    /// Expiry, seconds since the epoch.
    e: u64,
}

impl Credentials {
    /// The credentials kept in `objectstore`'s backend (whose records are
    /// sealed under `master`). Tokens live `token_lifetime` by `clock`.
    pub fn new(
        objectstore: &ObjectStore,
        master: &MasterKey,
        token_lifetime: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            records: objectstore.credentials(),
            secret_key: derived_mac(master, b"ostore/v1/credential-secret"),
            token_key: derived_mac(master, b"ostore/v1/token"),
            socket_key: socket_mac(master),
            token_lifetime,
            clock,
        }
    }

    fn secret_mac(&self, secret: &str) -> [u8; 32] {
        let mut mac = self.secret_key.clone();
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Makes a credential for `principal` with `scopes` and saves it.
    pub async fn create(
        &self,
        principal: Principal,
        scopes: Vec<Scope>,
    ) -> Result<NewCredential, AuthError> {
        let client_secret = URL_SAFE_NO_PAD.encode(random_array::<32>());
        let stored = StoredCredential {
            principal,
            scopes,
            secret_mac: self.secret_mac(&client_secret),
        };
        // A random 128-bit id is new, but an insert only where none is
        // costs nothing and makes sure.
        loop {
            let client_id = hex(&random_array::<16>());
            if self.records.insert(&client_id, &stored.encode()).await? {
                return Ok(NewCredential {
                    client_id,
                    client_secret,
                });
            }
        }
    }

    /// Deletes a credential; its tokens stop working on every host sharing
    /// the backend. Returns whether it existed.
    pub async fn delete(&self, client_id: &str) -> Result<bool, AuthError> {
        Ok(self.records.remove(client_id).await?)
    }

    /// Every credential, without secrets, in client id order.
    pub async fn list(&self) -> Result<Vec<CredentialInfo>, AuthError> {
        let mut out = Vec::new();
        for (client_id, body) in self.records.list().await? {
            let c = StoredCredential::decode(&body)?;
            out.push(CredentialInfo {
                client_id,
                principal: c.principal,
                scopes: c.scopes,
            });
        }
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(out)
    }

    /// The credential `client_id`, read from the backend.
    async fn stored(&self, client_id: &str) -> Result<Option<StoredCredential>, AuthError> {
        match self.records.get(client_id).await? {
            Some(body) => Ok(Some(StoredCredential::decode(&body)?)),
            None => Ok(None),
        }
    }

    /// Exchanges a client id and secret for a token.
    pub async fn issue_token(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<IssuedToken, AuthError> {
        let Some(stored) = self.stored(client_id).await? else {
            return Err(AuthError::BadCredentials);
        };
        if !constant_time_eq(&stored.secret_mac, &self.secret_mac(secret)) {
            return Err(AuthError::BadCredentials);
        }
        let claims = TokenClaims {
            c: client_id.to_string(),
            p: stored.principal,
            s: stored.scopes,
            e: self.clock.now_secs() + self.token_lifetime.as_secs(),
        };
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let mut mac = self.token_key.clone();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(IssuedToken {
            token: format!("{payload}.{signature}"),
            lifetime: self.token_lifetime,
            scopes: claims.s,
        })
    }

    /// Checks a bearer token and returns what it grants. The signature and
    /// expiry are checked first, so a forged token costs no backend read;
    /// then the credential is read, so a deleted one is refused at once.
    pub async fn verify_token(&self, token: &str) -> Result<Grant, AuthError> {
        let (payload, signature) = token.split_once('.').ok_or(AuthError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Invalid)?;
        let mut mac = self.token_key.clone();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::Invalid)?;
        let claims: TokenClaims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(AuthError::Invalid)?;
        if claims.e <= self.clock.now_secs() {
            return Err(AuthError::Expired);
        }
        if self.records.get(&claims.c).await?.is_none() {
            return Err(AuthError::Revoked);
        }
        Ok(Grant {
            client_id: claims.c,
            principal: claims.p,
            scopes: claims.s,
        })
    }
}

/// The credentials of one data directory as `ostore credentials` manages
/// them: its backend opened in this process when no host holds it, else the
/// host that does. From
/// [`DataDir::credential_admin`](crate::host::DataDir::credential_admin).
pub enum CredentialAdmin {
    /// No host holds the data: its backend, opened here.
    Backend {
        objectstore: ObjectStore,
        /// Boxed: its keyed MAC states make it large.
        credentials: Box<Credentials>,
    },
    /// A running host holds the data: asked through its credentials socket.
    #[cfg(unix)]
    Host(socket::HostCredentials),
}

impl fmt::Debug for CredentialAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialAdmin::Backend { credentials, .. } => {
                f.debug_tuple("Backend").field(credentials).finish()
            }
            #[cfg(unix)]
            CredentialAdmin::Host(host) => f.debug_tuple("Host").field(host).finish(),
        }
    }
}

impl CredentialAdmin {
    /// Makes a credential; see [`Credentials::create`].
    pub async fn create(
        &self,
        principal: Principal,
        scopes: Vec<Scope>,
    ) -> Result<NewCredential, AuthError> {
        match self {
            CredentialAdmin::Backend { credentials: c, .. } => c.create(principal, scopes).await,
            #[cfg(unix)]
            CredentialAdmin::Host(h) => h.create(principal, scopes).await,
        }
    }

    /// Deletes a credential; see [`Credentials::delete`].
    pub async fn delete(&self, client_id: &str) -> Result<bool, AuthError> {
        match self {
            CredentialAdmin::Backend { credentials: c, .. } => c.delete(client_id).await,
            #[cfg(unix)]
            CredentialAdmin::Host(h) => h.delete(client_id).await,
        }
    }

    /// Every credential; see [`Credentials::list`].
    pub async fn list(&self) -> Result<Vec<CredentialInfo>, AuthError> {
        match self {
            CredentialAdmin::Backend { credentials: c, .. } => c.list().await,
            #[cfg(unix)]
            CredentialAdmin::Host(h) => h.list().await,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::clock::ManualClock;

    /// A host: an object store of its own on `backend`, as every host
    /// sharing a backend opens one.
    async fn host(
        backend: &Arc<MemoryBackend>,
        master: &MasterKey,
        lifetime: Duration,
        clock: SharedClock,
    ) -> Credentials {
        let config = objectstore::Config {
            clock: clock.clone(),
            ..Default::default()
        };
        let objectstore = ObjectStore::open(backend.clone(), master, config)
            .await
            .unwrap();
        Credentials::new(&objectstore, master, lifetime, clock)
    }

    pub(super) async fn credentials(
        backend: &Arc<MemoryBackend>,
        master: &MasterKey,
    ) -> Credentials {
        host(
            backend,
            master,
            Duration::from_secs(3600),
            crate::clock::system(),
        )
        .await
    }

    /// Every key and value in the backend, end to end.
    async fn raw_bytes(backend: &MemoryBackend) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in backend
            .scan(crate::backend::Shards::ALL, b"", None, usize::MAX)
            .await
            .unwrap()
        {
            out.extend(k);
            out.extend(v);
        }
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[tokio::test]
    async fn a_credential_becomes_a_token_that_carries_its_grant() {
        let backend = Arc::new(MemoryBackend::new());
        let master = MasterKey::generate();
        let creds = credentials(&backend, &master).await;
        let new = creds
            .create(Principal::Application("app".into()), vec![Scope::ReadStore])
            .await
            .unwrap();
        assert!(matches!(
            creds.issue_token(&new.client_id, "wrong").await,
            Err(AuthError::BadCredentials)
        ));
        let issued = creds
            .issue_token(&new.client_id, &new.client_secret)
            .await
            .unwrap();
        assert_eq!(issued.scopes, [Scope::ReadStore]);
        let token = issued.token;
        let grant = creds.verify_token(&token).await.unwrap();
        assert_eq!(grant.principal, Principal::Application("app".into()));
        assert!(grant.has(Scope::ReadStore) && !grant.has(Scope::ManageStore));

        // The backend holds neither the secret, nor the client id, nor the
        // application's name or the scopes.
        let raw = raw_bytes(&backend).await;
        let id_bytes = unhex(&new.client_id);
        let needles: [&[u8]; 5] = [
            new.client_secret.as_bytes(),
            new.client_id.as_bytes(),
            &id_bytes,
            b"app",
            b"read:store",
        ];
        for needle in needles {
            assert!(
                !contains(&raw, needle),
                "{:?} is in the backend",
                String::from_utf8_lossy(needle)
            );
        }
        // Another host with the same master key accepts it.
        let server = credentials(&backend, &master).await;
        assert!(server.verify_token(&token).await.is_ok());
        // Tampering or a foreign key is refused.
        let mut forged = token.clone();
        forged.insert(3, 'x');
        assert!(server.verify_token(&forged).await.is_err());
        let stranger = credentials(&Arc::new(MemoryBackend::new()), &MasterKey::generate()).await;
        assert!(matches!(
            stranger.verify_token(&token).await,
            Err(AuthError::Invalid)
        ));
        // Deleting the credential revokes its tokens.
        assert!(creds.delete(&new.client_id).await.unwrap());
        assert!(matches!(
            server.verify_token(&token).await,
            Err(AuthError::Revoked)
        ));
        assert!(!creds.delete(&new.client_id).await.unwrap());
    }

    /// The bytes a client id's hex digits spell.
    fn unhex(client_id: &str) -> Vec<u8> {
        (0..client_id.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&client_id[i..i + 2], 16).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn tokens_expire() {
        let backend = Arc::new(MemoryBackend::new());
        let master = MasterKey::generate();
        let clock = Arc::new(ManualClock::starting_now());
        let creds = host(&backend, &master, Duration::from_secs(1), clock.clone()).await;
        let new = creds
            .create(Principal::Admin, Scope::ALL.to_vec())
            .await
            .unwrap();
        let token = creds
            .issue_token(&new.client_id, &new.client_secret)
            .await
            .unwrap()
            .token;
        assert!(creds.verify_token(&token).await.is_ok());
        clock.advance(Duration::from_millis(2100));
        assert!(matches!(
            creds.verify_token(&token).await,
            Err(AuthError::Expired)
        ));
    }

    #[tokio::test]
    async fn a_credential_made_on_one_host_works_on_all_and_deleted_on_another_stops_on_all() {
        let backend = Arc::new(MemoryBackend::new());
        let master = MasterKey::generate();
        let clock = Arc::new(ManualClock::starting_now());
        let lifetime = Duration::from_secs(3600);
        let mut hosts = Vec::new();
        for _ in 0..3 {
            hosts.push(host(&backend, &master, lifetime, clock.clone()).await);
        }
        let new = hosts[0]
            .create(Principal::Application("app".into()), vec![Scope::ReadStore])
            .await
            .unwrap();
        // Made on host 1: listed and exchanged for tokens on host 3, and
        // those tokens verify on every host.
        let listed = hosts[2].list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_id, new.client_id);
        let token = hosts[2]
            .issue_token(&new.client_id, &new.client_secret)
            .await
            .unwrap()
            .token;
        let early = hosts[0]
            .issue_token(&new.client_id, &new.client_secret)
            .await
            .unwrap()
            .token;
        for h in &hosts {
            for t in [&token, &early] {
                assert_eq!(
                    h.verify_token(t).await.unwrap().principal,
                    Principal::Application("app".into())
                );
            }
        }
        // Deleted on host 2: at once (no time passes), every host refuses
        // its tokens and issues no new ones.
        assert!(hosts[1].delete(&new.client_id).await.unwrap());
        for h in &hosts {
            for t in [&token, &early] {
                assert!(matches!(h.verify_token(t).await, Err(AuthError::Revoked)));
            }
            assert!(matches!(
                h.issue_token(&new.client_id, &new.client_secret).await,
                Err(AuthError::BadCredentials)
            ));
            assert!(h.list().await.unwrap().is_empty());
        }
        // Only one host can delete it.
        assert!(!hosts[2].delete(&new.client_id).await.unwrap());
    }

    /// Writes the credentials file as versions before credentials moved
    /// into the backend did.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_host_answers_for_its_credentials_as_soon_as_it_holds_the_database() {
        let dir = tempdir();
        let data = crate::host::DataDir::new(&dir);
        let master = MasterKey::generate();
        let config = crate::host::HostConfig::new(data.clone(), master.clone());
        // Built, not yet serving: it holds the database already.
        let host = crate::host::Host::build(config, &[]).await.unwrap();
        let admin = data
            .credential_admin(&master, &crate::backend::BackendConfig::redb())
            .await
            .expect("the host answers, though it serves no request yet");
        assert!(matches!(admin, CredentialAdmin::Host(_)));
        let new = admin
            .create(Principal::Admin, Scope::ALL.to_vec())
            .await
            .unwrap();
        let listed = admin.list().await.unwrap();
        assert!(listed.iter().any(|c| c.client_id == new.client_id));
        drop(host);
        let _ = std::fs::remove_dir_all(&dir);
    }

    pub(super) fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ostore-auth-{}", hex(&random_array::<8>())));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
