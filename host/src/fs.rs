//! Files only their owner may read: the master key, the database (which
//! holds the sealed credentials too) and TLS private keys. Their contents
//! are secret or sealed, but even sealed data says something (sizes, expiry
//! times) that is no one else's business.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// Options that create a file readable and writable by its owner only
/// (mode 0600 on Unix); the caller chooses create, truncate and the rest.
pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Makes `path` private: creates it empty if missing, and takes away any
/// access others had (a file made by an older version, say).
pub(crate) fn make_private(path: &Path) -> io::Result<()> {
    private_options().write(true).create(true).open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
