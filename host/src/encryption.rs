//! Encryption at rest: nothing the object store writes is plaintext.
//!
//! - Lookup keys are HMAC-SHA256 tags (truncated to 128 bits) of names, so the
//!   backend can find a record without ever holding a key, partition, store
//!   or application name.
//! - Records are sealed with AES-256-GCM under a fresh random 96-bit nonce per
//!   write, with the record's backend key as associated data: a record that is
//!   altered, or moved under another key, fails to open instead of yielding
//!   wrong data.
//! - Each application has its own random data keys (one for sealing, one for
//!   tags), stored wrapped by keys derived from the master key. Rotating the
//!   master key therefore re-wraps a few records, not all data.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a lookup tag in bytes. 128 bits keeps collisions out of reach
/// (birthday bound 2^64) while keeping backend keys short.
pub const TAG_LEN: usize = 16;
/// A lookup tag: the at-rest stand-in for a name.
pub type Tag = [u8; TAG_LEN];

const NONCE_LEN: usize = 12;
/// First byte of every sealed record, so the format can evolve.
const SEALED_FORMAT: u8 = 1;

/// The environment variable that may hold the master key (64 hex digits).
pub const MASTER_KEY_ENV: &str = "OSTORE_MASTER_KEY";

/// Why key material could not be loaded or a record could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// A sealed record did not authenticate: it was altered at rest, moved
    /// to another key, or sealed under another key.
    #[error("integrity check failed: the record was altered or sealed with another key")]
    Integrity,
    /// The master key text is not 32 bytes written as 64 hex digits.
    #[error("malformed master key: {0}")]
    MalformedKey(String),
    /// Reading or writing the key file failed.
    #[error("key file {path}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// The 256-bit master key. It never touches the backend; only keys derived
/// from it do, and only in wrapped (sealed) form.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self(random_array())
    }

    /// Parses 64 hex digits (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, EncryptionError> {
        let text = text.trim();
        // Checked before slicing: a multi-byte character must not split.
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EncryptionError::MalformedKey(format!(
                "expected 64 hex digits, found {} characters",
                text.chars().count()
            )));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| EncryptionError::MalformedKey("expected 64 hex digits".to_string()))?;
        }
        Ok(Self(key))
    }

    /// The key as 64 lowercase hex digits, the form `parse` reads.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Reads the key file at `path`, or creates it with a fresh key and
    /// permissions 0600 if it does not exist. Returns the key and whether it
    /// was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), EncryptionError> {
        let io_err = |source| EncryptionError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io_err)?;
                }
                let mut file = crate::fs::private_options()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(io_err)?;
                writeln!(file, "{}", key.to_hex()).map_err(io_err)?;
                file.sync_all().map_err(io_err)?;
                Ok((key, true))
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// The keys derived from the master key: one wraps application keys and
    /// seals host records, one makes application tags.
    pub(crate) fn sealer(&self) -> Sealer {
        Sealer::new(
            &self.derive(b"ostore/v1/seal"),
            &self.derive(b"ostore/v1/tag"),
        )
    }

    /// A key for one purpose, named by `label`; keys of different labels
    /// are independent.
    pub(crate) fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key size");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }
}

/// Bytes as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Fills an array from the operating system's random source.
pub(crate) fn random_array<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// Seals records and makes lookup tags with one pair of keys.
pub(crate) struct Sealer {
    cipher: Aes256Gcm,
    tag_key: Hmac<Sha256>,
}

impl Sealer {
    pub(crate) fn new(seal_key: &[u8; 32], tag_key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new_from_slice(seal_key).expect("32-byte key"),
            tag_key: <Hmac<Sha256> as KeyInit>::new_from_slice(tag_key).expect("any key size"),
        }
    }

    /// The tag of a name in a domain (`b"key"`, `b"store"`, ...), scoped by
    /// `parent` (the tags of what contains it). Every field is
    /// length-prefixed so that no two inputs encode alike.
    pub(crate) fn tag(&self, domain: &[u8], parent: &[u8], name: &[u8]) -> Tag {
        let mut mac = self.tag_key.clone();
        for part in [domain, parent, name] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Seals `plaintext`, bound to `aad` (the record's backend key).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = random_array();
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_FORMAT);
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens what [`seal`](Self::seal) made with the same `aad`.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEALED_FORMAT {
            return Err(EncryptionError::Integrity);
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().expect("length checked");
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| EncryptionError::Integrity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_with_their_key_and_aad() {
        let sealer = MasterKey::generate().sealer();
        let sealed = sealer.seal(b"key-1", b"secret value");
        assert_eq!(sealer.open(b"key-1", &sealed).unwrap(), b"secret value");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert!(matches!(
            sealer.open(b"key-2", &sealed),
            Err(EncryptionError::Integrity)
        ));
        let other = MasterKey::generate().sealer();
        assert!(matches!(
            other.open(b"key-1", &sealed),
            Err(EncryptionError::Integrity)
        ));
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert!(
                sealer.open(b"key-1", &flipped).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let sealer = MasterKey::generate().sealer();
        assert_ne!(sealer.seal(b"k", b"v"), sealer.seal(b"k", b"v"));
    }

    #[test]
    fn tags_separate_domains_and_parents() {
        let sealer = MasterKey::generate().sealer();
        let t = sealer.tag(b"key", b"p", b"name");
        assert_eq!(t, sealer.tag(b"key", b"p", b"name"));
        assert_ne!(t, sealer.tag(b"store", b"p", b"name"));
        assert_ne!(t, sealer.tag(b"key", b"q", b"name"));
        assert_ne!(
            sealer.tag(b"key", b"ab", b"c"),
            sealer.tag(b"key", b"a", b"bc")
        );
    }

    #[test]
    fn master_key_round_trips_through_hex_and_rejects_junk() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::parse(&key.to_hex()).unwrap().0, key.0);
        assert!(MasterKey::parse("abc").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
        assert!(MasterKey::parse(&"+f".repeat(32)).is_err());
        assert!(
            MasterKey::parse(&format!("a{}", "€".repeat(21))).is_err(),
            "no panic on multi-byte text"
        );
    }
}
