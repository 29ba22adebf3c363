//! Client credentials in the backend: host-wide records, so that every host
//! sharing the backend knows the same credentials.
//!
//! A credential is stored under the tag of its client id (the id itself is
//! only inside the seal), sealed under the master key with its backend key
//! as associated data, like every other record. What a credential grants
//! (and the HMAC of its secret) is the [`auth`](crate::auth) layer's
//! business: here it is opaque bytes.
//!
//! Nothing is cached: every read goes to the backend, so a credential
//! created or deleted through any host is seen by every other at its next
//! read.

use std::sync::Arc;

use crate::backend::{Batch, Expect};

use super::keys::{Prefix, RecordKey};
use super::record::CredentialRecord;
use super::sealed::Commit;
use super::{Error, Inner, MAX_CONFLICT_RETRIES};

/// The client credentials kept in the backend; from
/// [`ObjectStore::credentials`](super::ObjectStore::credentials). Cheap to
/// clone.
#[derive(Clone)]
pub struct CredentialRecords {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CredentialRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRecords").finish_non_exhaustive()
    }
}

impl CredentialRecords {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    fn key(&self, client_id: &str) -> RecordKey {
        RecordKey::Credential(
            self.inner
                .master
                .tag(b"credential", b"", client_id.as_bytes()),
        )
    }

    /// Stores `body` as the credential `client_id` unless one of that id
    /// exists; says whether it stored it. Of concurrent inserts of one id
    /// (on any hosts) exactly one stores.
    pub async fn insert(&self, client_id: &str, body: &[u8]) -> Result<bool, Error> {
        let table = self.inner.master_table();
        let key = self.key(client_id);
        let mut batch = Batch::new(key.shard().encode());
        let key = key.encode();
        let record = CredentialRecord {
            client_id: client_id.to_string(),
            body: body.to_vec(),
        };
        batch.put(key.clone(), table.seal(&key, &record), Expect::Absent);
        Ok(table.commit(batch).await? == Commit::Done)
    }

    /// The body of the credential `client_id`, if it exists.
    pub async fn get(&self, client_id: &str) -> Result<Option<Vec<u8>>, Error> {
        let opened = self
            .inner
            .master_table()
            .get::<CredentialRecord>(&self.key(client_id))
            .await?;
        match opened {
            None => Ok(None),
            // Tags are 128 bits, so another id under this tag is damage.
            Some(o) if o.record.client_id != client_id => Err(Error::Integrity),
            Some(o) => Ok(Some(o.record.body)),
        }
    }

    /// Deletes the credential `client_id`; says whether it existed.
    pub async fn remove(&self, client_id: &str) -> Result<bool, Error> {
        let table = self.inner.master_table();
        let key = self.key(client_id);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(opened) = table.get::<CredentialRecord>(&key).await? else {
                return Ok(false);
            };
            // Conditional on what was read, so that of two hosts deleting
            // the same credential exactly one reports it existed.
            let mut batch = Batch::new(key.shard().encode());
            batch.delete(key.encode(), Expect::Value(opened.sealed));
            if table.commit(batch).await? == Commit::Done {
                return Ok(true);
            }
        }
        Err(Error::Contended("a credential"))
    }

    /// Every credential, as (client id, body), in no particular order: one
    /// scan of the host shard's credential records.
    pub async fn list(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let table = self.inner.master_table();
        let mut scan = table.scan(Prefix::Credentials);
        let mut out = Vec::new();
        loop {
            let chunk = scan.next_chunk().await?;
            if chunk.is_empty() {
                break;
            }
            for (key, sealed) in chunk {
                let record: CredentialRecord = table.open(&key, &sealed)?;
                out.push((record.client_id, record.body));
            }
        }
        Ok(out)
    }
}
