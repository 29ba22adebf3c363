//! Listing cursors: the last name listed, sealed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Scope;
use crate::encryption::Sealer;
use crate::objectstore::Error;

/// Cursors pad the name they seal to a multiple of this, so that a cursor's
/// length says little of the name's.
const CURSOR_PAD: usize = 32;

fn cursor_context(scope: Scope, prefix: &str) -> Vec<u8> {
    let mut aad = b"ostore index cursor".to_vec();
    // A partition's cursors are bound as they were before other scopes
    // existed, so that those handed out then still resume; every other
    // scope is bound to the prefix of its own pages, which no other
    // scope's prefix equals.
    match scope {
        Scope::Keys(partition) => aad.extend_from_slice(&partition.entries().encode()),
        other => aad.extend_from_slice(&other.pages().encode()),
    }
    aad.extend_from_slice(&(prefix.len() as u64).to_be_bytes());
    aad.extend_from_slice(prefix.as_bytes());
    aad
}

/// A cursor after `name`: the name sealed (padded with NULs, which no name
/// holds), bound to the scope (partition, store or application) and prefix
/// of its listing, so that it shows nothing of the name but a rounded
/// length, and cannot be forged or used in another listing.
pub(crate) fn encode_cursor(sealer: &Sealer, scope: Scope, prefix: &str, name: &str) -> String {
    let mut plain = name.as_bytes().to_vec();
    plain.resize(name.len().div_ceil(CURSOR_PAD).max(1) * CURSOR_PAD, 0);
    URL_SAFE_NO_PAD.encode(sealer.seal(&cursor_context(scope, prefix), &plain))
}

/// The name a cursor of [`encode_cursor`] resumes after.
pub(crate) fn decode_cursor(
    sealer: &Sealer,
    scope: Scope,
    prefix: &str,
    cursor: &str,
) -> Result<String, Error> {
    let malformed = || Error::InvalidArgument("malformed cursor, or one of another listing".into());
    let sealed = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    let mut plain = sealer
        .open(&cursor_context(scope, prefix), &sealed)
        .map_err(|_| malformed())?;
    while plain.last() == Some(&0) {
        plain.pop();
    }
    String::from_utf8(plain).map_err(|_| malformed())
}
