//! A host's data directory: which files it holds and where, the master key
//! (from the environment or its file), and opening the credentials when no
//! host is running (or asking the running one through its socket).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::{AuthError, CredentialAdmin, Credentials};
use crate::backend::{BackendConfig, BackendError};
use crate::clock::{self, SharedClock};
use crate::encryption::{EncryptionError, MasterKey};
use crate::objectstore::{self, ObjectStore};

#[cfg(unix)]
use super::held_by_another_process;
use super::{HostError, backend_place};

/// The database file inside a data directory.
const DATABASE_FILE: &str = "ostore.redb";
/// Where versions before credentials moved into the backend kept them.
const OLD_CREDENTIALS_FILE: &str = "credentials.sealed";
const CREDENTIALS_SOCKET: &str = "credentials.sock";
const KEY_FILE: &str = "master.key";

/// A host's data directory: the encrypted database (which also holds the
/// sealed client credentials), the running host's credentials socket, and
/// (unless the key is kept elsewhere) the master key.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

/// Why the master key cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key text (from the environment) is not a key.
    #[error(transparent)]
    Malformed(EncryptionError),
    /// Reading or making the key file failed.
    #[error(transparent)]
    File(EncryptionError),
    /// The database exists but its key file does not: a new key would only
    /// be refused, and leave a useless key file behind.
    #[error(
        "{} holds data but the master key file {} is missing; give the key with \
         --key-file or ${}",
        database.display(), key_file.display(), crate::encryption::MASTER_KEY_ENV
    )]
    MissingKeyFile {
        database: PathBuf,
        key_file: PathBuf,
    },
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the directory if it does not exist.
    pub fn create(&self) -> Result<(), HostError> {
        std::fs::create_dir_all(&self.path).map_err(|source| HostError::DataDir {
            path: self.path.clone(),
            source,
        })
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.path.join(DATABASE_FILE)
    }

    /// Where the master key is kept unless it is given otherwise.
    pub fn default_key_file(&self) -> PathBuf {
        self.path.join(KEY_FILE)
    }

    /// The sealed credentials file of versions that kept credentials
    /// outside the database. If it exists it is imported into the backend
    /// when the data is opened, then renamed to
    /// [`credentials.sealed.imported`](crate::auth::imported_path).
    pub fn old_credentials_file(&self) -> PathBuf {
        self.path.join(OLD_CREDENTIALS_FILE)
    }

    /// Where a running host answers `ostore credentials` (see
    /// [`auth::socket`](crate::auth::socket)).
    pub fn credentials_socket(&self) -> PathBuf {
        self.path.join(CREDENTIALS_SOCKET)
    }

    /// The credentials kept in `objectstore` (this directory's data), after
    /// importing the [old credentials file](Self::old_credentials_file) if
    /// there is one.
    pub async fn open_credentials(
        &self,
        objectstore: &ObjectStore,
        master_key: &MasterKey,
        token_lifetime: Duration,
        clock: SharedClock,
    ) -> Result<Credentials, AuthError> {
        let credentials = Credentials::new(objectstore, master_key, token_lifetime, clock);
        let file = self.old_credentials_file();
        let imported = credentials.import_file(&file, master_key).await?;
        if imported > 0 {
            tracing::info!(
                "imported {imported} credentials from {} into the database; the file is now {}",
                file.display(),
                crate::auth::imported_path(&file).display()
            );
        }
        Ok(credentials)
    }

    /// The credentials of this directory as `ostore credentials` manages
    /// them. On redb: through the running host that holds the database if
    /// there is one, else in the database, opened here (and closed when the
    /// result is dropped). On Redis, which any number of processes may
    /// share: in Redis.
    pub async fn credential_admin(
        &self,
        master_key: &MasterKey,
        backend: &BackendConfig,
    ) -> Result<CredentialAdmin, HostError> {
        #[cfg(unix)]
        if backend.is_redb()
            && let Some(host) =
                crate::auth::socket::HostCredentials::find(&self.credentials_socket(), master_key)
                    .await
        {
            return Ok(CredentialAdmin::Host(host));
        }
        let database = self.database();
        let place = backend_place(backend, &database);
        let open = |source| HostError::Open {
            place: place.clone(),
            source,
        };
        let opened = match backend.open(&database).await {
            Ok(opened) => opened,
            Err(e @ BackendError::Connect { .. }) => return Err(HostError::Backend(e)),
            #[cfg(unix)]
            Err(e) if held_by_another_process(&e) => {
                // A host that has just opened the database serves its
                // socket a moment later: give it that moment.
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let socket = self.credentials_socket();
                    if let Some(host) =
                        crate::auth::socket::HostCredentials::find(&socket, master_key).await
                    {
                        return Ok(CredentialAdmin::Host(host));
                    }
                }
                return Err(open(e.into()));
            }
            Err(e) => return Err(open(e.into())),
        };
        let objectstore = ObjectStore::open(opened, master_key, objectstore::Config::default())
            .await
            .map_err(open)?;
        // No token is issued here: no lifetime, and the clock is moot.
        let credentials = self
            .open_credentials(&objectstore, master_key, Duration::ZERO, clock::system())
            .await?;
        Ok(CredentialAdmin::Backend {
            objectstore,
            credentials: Box::new(credentials),
        })
    }

    /// The master key: `text` (64 hex digits, from the environment) if
    /// given, else the key file (by default `master.key` here), made with a
    /// fresh key if missing. Says whether it made one.
    pub fn master_key(
        &self,
        key_file: Option<&Path>,
        text: Option<&str>,
    ) -> Result<(MasterKey, bool), KeyError> {
        if let Some(text) = text {
            return Ok((MasterKey::parse(text).map_err(KeyError::Malformed)?, false));
        }
        let key_file = key_file.map_or_else(|| self.default_key_file(), Path::to_path_buf);
        let database = self.database();
        if !key_file.exists() && database.exists() {
            return Err(KeyError::MissingKeyFile { database, key_file });
        }
        MasterKey::load_or_create(&key_file).map_err(KeyError::File)
    }
}
