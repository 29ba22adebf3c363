//! Credentials from before they moved into the backend: an older version
//! kept them in a sealed file of the data directory, which the first start
//! of this version imports once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{AuthError, Credentials, StoredCredential};
use crate::encryption::MasterKey;

/// The associated data of the old credentials file.
const CREDENTIALS_FILE_AAD: &[u8] = b"ostore credentials v1";

/// What the old credentials file becomes once imported.
const IMPORTED_SUFFIX: &str = "imported";

impl Credentials {
    /// Imports the credentials file an older version kept at `path`
    /// (sealed under `master`, the same key as the backend's), then renames
    /// it to `<path>.imported`. Each credential is stored only if absent, so
    /// an import cut short (before the rename) can simply run again.
    /// Returns how many credentials were new; 0 if there is no file.
    ///
    /// The rename is what keeps a credential deleted after the import from
    /// coming back at the next start: a file left in place would be
    /// imported again.
    pub async fn import_file(&self, path: &Path, master: &MasterKey) -> Result<usize, AuthError> {
        let Some(entries) = read_old_file(path, master)? else {
            return Ok(0);
        };
        let mut imported = 0;
        for (client_id, stored) in entries {
            if self.records.insert(&client_id, &stored.encode()).await? {
                imported += 1;
            }
        }
        let done = imported_path(path);
        std::fs::rename(path, &done).map_err(|e| {
            AuthError::File(format!(
                "imported {} but cannot rename it to {}: {e}",
                path.display(),
                done.display()
            ))
        })?;
        Ok(imported)
    }
}

/// Where the old credentials file at `path` is moved once imported.
pub fn imported_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(IMPORTED_SUFFIX);
    PathBuf::from(name)
}

/// The credentials of the old file at `path`; `None` if there is none.
fn read_old_file(
    path: &Path,
    master: &MasterKey,
) -> Result<Option<BTreeMap<String, StoredCredential>>, AuthError> {
    let sealed = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuthError::File(format!("{}: {e}", path.display()))),
    };
    let plain = master
        .sealer()
        .open(CREDENTIALS_FILE_AAD, &sealed)
        .map_err(|e| AuthError::File(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|e| AuthError::File(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::tests::{credentials, tempdir};
    use crate::auth::{CredentialAdmin, Principal, Scope};
    use crate::backend::MemoryBackend;

    fn write_old_file(
        path: &Path,
        master: &MasterKey,
        entries: &BTreeMap<String, StoredCredential>,
    ) {
        let plain = serde_json::to_vec(entries).unwrap();
        std::fs::write(path, master.sealer().seal(CREDENTIALS_FILE_AAD, &plain)).unwrap();
    }

    #[tokio::test]
    async fn an_old_credentials_file_is_imported_once_then_renamed() {
        let dir = tempdir();
        let file = dir.join("credentials.sealed");
        let backend = Arc::new(MemoryBackend::new());
        let master = MasterKey::generate();
        let creds = credentials(&backend, &master).await;
        // A file as the old code made it: one admin credential, one for an
        // application, each with the HMAC of its secret.
        let secret = "old-secret";
        let mut entries = BTreeMap::new();
        for (id, principal) in [
            ("0011", Principal::Admin),
            ("0022", Principal::Application("app".into())),
        ] {
            entries.insert(
                id.to_string(),
                StoredCredential {
                    principal,
                    scopes: vec![Scope::ReadStore, Scope::ManageStoreData],
                    secret_mac: creds.secret_mac(secret),
                },
            );
        }
        write_old_file(&file, &master, &entries);

        assert_eq!(creds.import_file(&file, &master).await.unwrap(), 2);
        assert!(!file.exists());
        assert!(dir.join("credentials.sealed.imported").exists());
        let listed = creds.list().await.unwrap();
        let ids: Vec<_> = listed.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(ids, ["0011", "0022"]);
        assert_eq!(listed[0].principal, Principal::Admin);
        assert_eq!(listed[0].scopes, [Scope::ReadStore, Scope::ManageStoreData]);
        // The old secrets still get tokens, on any host of the backend.
        let other = credentials(&backend, &master).await;
        let token = other.issue_token("0022", secret).await.unwrap().token;
        assert!(creds.verify_token(&token).await.is_ok());

        // No file: nothing to do. The same file again (an import cut short
        // before its rename): nothing new, nothing doubled.
        assert_eq!(creds.import_file(&file, &master).await.unwrap(), 0);
        write_old_file(&file, &master, &entries);
        assert_eq!(creds.import_file(&file, &master).await.unwrap(), 0);
        assert_eq!(creds.list().await.unwrap().len(), 2);
        // A credential deleted after the import stays deleted: the renamed
        // file is not read again.
        assert!(creds.delete("0011").await.unwrap());
        assert_eq!(creds.import_file(&file, &master).await.unwrap(), 0);
        assert_eq!(creds.list().await.unwrap().len(), 1);
        // A file sealed under another key is refused, not imported.
        write_old_file(&file, &MasterKey::generate(), &entries);
        assert!(matches!(
            creds.import_file(&file, &master).await,
            Err(AuthError::File(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_data_directory_of_the_old_layout_keeps_its_credentials() {
        let dir = tempdir();
        let data = crate::host::DataDir::new(&dir);
        let master = MasterKey::generate();
        let secret = "old-secret";
        let secret_mac = credentials(&Arc::new(MemoryBackend::new()), &master)
            .await
            .secret_mac(secret);
        let entries = BTreeMap::from([(
            "00aa".to_string(),
            StoredCredential {
                principal: Principal::Admin,
                scopes: Scope::ALL.to_vec(),
                secret_mac,
            },
        )]);
        write_old_file(&data.old_credentials_file(), &master, &entries);

        // Opened as `ostore credentials` opens it: imported, file renamed.
        let admin = data
            .credential_admin(&master, &crate::backend::BackendConfig::redb())
            .await
            .unwrap();
        let listed = admin.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_id, "00aa");
        assert!(!data.old_credentials_file().exists());
        assert!(imported_path(&data.old_credentials_file()).exists());
        drop(admin);

        // It is in the database now: opened again, the old secret still
        // gets a token.
        let CredentialAdmin::Backend { credentials, .. } = data
            .credential_admin(&master, &crate::backend::BackendConfig::redb())
            .await
            .unwrap()
        else {
            panic!("no host runs here");
        };
        assert!(credentials.issue_token("00aa", secret).await.is_ok());
        assert!(matches!(
            credentials.issue_token("00aa", "wrong").await,
            Err(AuthError::BadCredentials)
        ));
        drop(credentials);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
