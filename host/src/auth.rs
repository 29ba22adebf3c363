//! Client credentials, bearer tokens and scopes for the REST and Stats APIs.
//!
//! - A credential is a client id and a random secret, bound to one
//!   application (or, for an admin credential, to all of them) and a set of
//!   scopes. Only an HMAC of the secret is kept, in a file sealed with the
//!   master key; the secret is shown once, when the credential is made.
//! - `POST /accounts/api/v2/oauth2/token` exchanges a credential for a bearer
//!   token: the grant (client, application, scopes, expiry) with an HMAC
//!   under a key derived from the master key. Tokens therefore survive a
//!   restart and need no storage; deleting a credential revokes its tokens,
//!   because every request checks the credential still exists.
//! - Secrets and tokens are never logged; `Debug` of the types holding them
//!   prints nothing secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::SharedClock;
use crate::encryption::{MasterKey, Sealer, hex, random_array};

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

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("credentials file: {0}")]
    File(String),
}

/// A stored credential: never the secret itself.
#[derive(Clone, Serialize, Deserialize)]
struct StoredCredential {
    principal: Principal,
    scopes: Vec<Scope>,
    /// HMAC-SHA256 of the secret under a key derived from the master key.
    secret_mac: [u8; 32],
}

/// A newly made credential. The secret is in here and nowhere else.
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
#[derive(Debug, Clone)]
pub struct CredentialInfo {
    pub client_id: String,
    pub principal: Principal,
    pub scopes: Vec<Scope>,
}

const CREDENTIALS_AAD: &[u8] = b"ostore credentials v1";

/// The credentials of a data directory, kept in a sealed file that the CLI
/// writes and the server re-reads when it changes.
pub struct Credentials {
    path: PathBuf,
    sealer: Sealer,
    secret_key: Hmac<Sha256>,
    token_key: Hmac<Sha256>,
    token_lifetime: Duration,
    /// When tokens expire is read off this clock.
    clock: SharedClock,
    loaded: RwLock<Loaded>,
}

#[derive(Default)]
struct Loaded {
    /// What identifies the file's version: (modified, length, inode).
    version: Option<FileVersion>,
    entries: BTreeMap<String, StoredCredential>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Changes whenever the file is replaced (writes go through a rename, so the
/// inode changes even within one mtime tick).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileVersion {
    fn of(m: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(m);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            modified: m.modified().ok(),
            len: m.len(),
            inode,
        }
    }
}

fn derived_mac(master: &MasterKey, label: &[u8]) -> Hmac<Sha256> {
    let key = master.derive(label);
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key size")
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
    /// The credentials kept at `path` (the file need not exist yet), sealed
    /// under `master`. Tokens live `token_lifetime` by `clock`.
    pub fn open(
        path: &Path,
        master: &MasterKey,
        token_lifetime: Duration,
        clock: SharedClock,
    ) -> Result<Self, AuthError> {
        let credentials = Self {
            path: path.to_path_buf(),
            sealer: master.sealer(),
            secret_key: derived_mac(master, b"ostore/v1/credential-secret"),
            token_key: derived_mac(master, b"ostore/v1/token"),
            token_lifetime,
            clock,
            loaded: RwLock::new(Loaded::default()),
        };
        credentials.reload_if_changed()?;
        Ok(credentials)
    }

    fn secret_mac(&self, secret: &str) -> [u8; 32] {
        let mut mac = self.secret_key.clone();
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Re-reads the file if it changed since it was last read.
    fn reload_if_changed(&self) -> Result<(), AuthError> {
        let version = match std::fs::metadata(&self.path) {
            Ok(m) => Some(FileVersion::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(AuthError::File(e.to_string())),
        };
        if version.is_some() && self.loaded.read().expect("credentials lock").version == version {
            return Ok(());
        }
        let entries = self.read_file()?;
        *self.loaded.write().expect("credentials lock") = Loaded { version, entries };
        Ok(())
    }

    fn read_file(&self) -> Result<BTreeMap<String, StoredCredential>, AuthError> {
        let sealed = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(AuthError::File(e.to_string())),
        };
        let plain = self
            .sealer
            .open(CREDENTIALS_AAD, &sealed)
            .map_err(|e| AuthError::File(format!("{}: {e}", self.path.display())))?;
        serde_json::from_slice(&plain).map_err(|e| AuthError::File(e.to_string()))
    }

    fn write_file(&self, entries: &BTreeMap<String, StoredCredential>) -> Result<(), AuthError> {
        let plain = serde_json::to_vec(entries).expect("credentials serialize");
        let sealed = self.sealer.seal(CREDENTIALS_AAD, &plain);
        let tmp = self.path.with_extension("tmp");
        let io = |e: std::io::Error| AuthError::File(format!("{}: {e}", self.path.display()));
        {
            let mut file = crate::fs::private_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io)?;
            std::io::Write::write_all(&mut file, &sealed).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }

    /// Makes a credential for `principal` with `scopes` and saves it.
    pub fn create(
        &self,
        principal: Principal,
        scopes: Vec<Scope>,
    ) -> Result<NewCredential, AuthError> {
        let mut entries = self.read_file()?;
        let client_id = hex(&random_array::<16>());
        let client_secret = URL_SAFE_NO_PAD.encode(random_array::<32>());
        entries.insert(
            client_id.clone(),
            StoredCredential {
                principal,
                scopes,
                secret_mac: self.secret_mac(&client_secret),
            },
        );
        self.write_file(&entries)?;
        Ok(NewCredential {
            client_id,
            client_secret,
        })
    }

    /// Deletes a credential; its tokens stop working. Returns whether it
    /// existed.
    pub fn delete(&self, client_id: &str) -> Result<bool, AuthError> {
        let mut entries = self.read_file()?;
        let existed = entries.remove(client_id).is_some();
        if existed {
            self.write_file(&entries)?;
        }
        Ok(existed)
    }

    /// Every credential, without secrets.
    pub fn list(&self) -> Result<Vec<CredentialInfo>, AuthError> {
        Ok(self
            .read_file()?
            .into_iter()
            .map(|(client_id, c)| CredentialInfo {
                client_id,
                principal: c.principal,
                scopes: c.scopes,
            })
            .collect())
    }

    /// Exchanges a client id and secret for a token.
    pub fn issue_token(&self, client_id: &str, secret: &str) -> Result<IssuedToken, AuthError> {
        self.reload_if_changed()?;
        let loaded = self.loaded.read().expect("credentials lock");
        let Some(stored) = loaded.entries.get(client_id) else {
            return Err(AuthError::BadCredentials);
        };
        if !constant_time_eq(&stored.secret_mac, &self.secret_mac(secret)) {
            return Err(AuthError::BadCredentials);
        }
        let claims = TokenClaims {
            c: client_id.to_string(),
            p: stored.principal.clone(),
            s: stored.scopes.clone(),
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

    /// Checks a bearer token and returns what it grants.
    pub fn verify_token(&self, token: &str) -> Result<Grant, AuthError> {
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
        self.reload_if_changed()?;
        if !self
            .loaded
            .read()
            .expect("credentials lock")
            .entries
            .contains_key(&claims.c)
        {
            return Err(AuthError::Revoked);
        }
        Ok(Grant {
            client_id: claims.c,
            principal: claims.p,
            scopes: claims.s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(dir: &Path, master: &MasterKey, lifetime: Duration) -> Credentials {
        credentials_at(dir, master, lifetime, crate::clock::system())
    }

    fn credentials_at(
        dir: &Path,
        master: &MasterKey,
        lifetime: Duration,
        clock: SharedClock,
    ) -> Credentials {
        Credentials::open(&dir.join("credentials.sealed"), master, lifetime, clock).unwrap()
    }

    #[test]
    fn a_credential_becomes_a_token_that_carries_its_grant() {
        let dir = tempdir();
        let master = MasterKey::generate();
        let creds = credentials(&dir, &master, Duration::from_secs(3600));
        let new = creds
            .create(Principal::Application("app".into()), vec![Scope::ReadStore])
            .unwrap();
        assert!(matches!(
            creds.issue_token(&new.client_id, "wrong"),
            Err(AuthError::BadCredentials)
        ));
        let issued = creds
            .issue_token(&new.client_id, &new.client_secret)
            .unwrap();
        assert_eq!(issued.scopes, [Scope::ReadStore]);
        let token = issued.token;
        let grant = creds.verify_token(&token).unwrap();
        assert_eq!(grant.principal, Principal::Application("app".into()));
        assert!(grant.has(Scope::ReadStore) && !grant.has(Scope::ManageStore));

        // The file holds neither the secret nor the application's name.
        let file = std::fs::read(dir.join("credentials.sealed")).unwrap();
        for needle in [new.client_secret.as_bytes(), b"app", b"read:store"] {
            assert!(!file.windows(needle.len()).any(|w| w == needle));
        }
        // Another process (the server) with the same master key accepts it.
        let server = credentials(&dir, &master, Duration::from_secs(3600));
        assert!(server.verify_token(&token).is_ok());
        // Tampering or a foreign key is refused.
        let mut forged = token.clone();
        forged.insert(3, 'x');
        assert!(server.verify_token(&forged).is_err());
        let stranger = credentials(
            &tempdir(),
            &MasterKey::generate(),
            Duration::from_secs(3600),
        );
        assert_eq!(stranger.verify_token(&token), Err(AuthError::Invalid));
        // Deleting the credential revokes its tokens.
        assert!(creds.delete(&new.client_id).unwrap());
        assert_eq!(server.verify_token(&token), Err(AuthError::Revoked));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_expire() {
        let dir = tempdir();
        let master = MasterKey::generate();
        let clock = std::sync::Arc::new(crate::clock::ManualClock::starting_now());
        let creds = credentials_at(&dir, &master, Duration::from_secs(1), clock.clone());
        let new = creds.create(Principal::Admin, Scope::ALL.to_vec()).unwrap();
        let token = creds
            .issue_token(&new.client_id, &new.client_secret)
            .unwrap()
            .token;
        assert!(creds.verify_token(&token).is_ok());
        clock.advance(Duration::from_millis(2100));
        assert_eq!(creds.verify_token(&token), Err(AuthError::Expired));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ostore-auth-{}", hex(&random_array::<8>())));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
