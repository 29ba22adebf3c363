//! The records of the host and its applications: the master key's check,
//! each application's data keys, client credentials.

use super::wire::{Reader, Writer};
use super::{Malformed, Record};

/// The record that proves the master key matches the data: a known text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MasterCheck;

const MASTER_CHECK_TEXT: &[u8] = b"ostore master key check v1";

impl Record for MasterCheck {
    fn encode(&self) -> Vec<u8> {
        MASTER_CHECK_TEXT.to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        if bytes == MASTER_CHECK_TEXT {
            Ok(MasterCheck)
        } else {
            Err(Malformed)
        }
    }
}

/// An application's identity and its data keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AppRecord {
    pub name: String,
    pub seal_key: [u8; 32],
    pub tag_key: [u8; 32],
}

impl Record for AppRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.name.as_bytes());
        w.0.extend_from_slice(&self.seal_key);
        w.0.extend_from_slice(&self.tag_key);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            name: r.string()?,
            seal_key: r.key32()?,
            tag_key: r.key32()?,
        };
        r.finish()?;
        Ok(record)
    }
}

/// A client credential: its id (in clear only inside the seal) and what
/// the auth layer keeps of it, opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialRecord {
    pub client_id: String,
    pub body: Vec<u8>,
}

impl Record for CredentialRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.client_id.as_bytes()).bytes(&self.body);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            client_id: r.string()?,
            body: r.bytes()?.to_vec(),
        };
        r.finish()?;
        Ok(record)
    }
}
