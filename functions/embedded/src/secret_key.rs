//! The local mode's data key for secrets at rest ([`webhooks_core::sealing`]): the file
//! [`KEY_FILE`] beside the database, 32 random bytes as base64url, created once with mode 0600
//! and read once when the [`Database`](crate::db::Database) opens (never per delivery).
//!
//! The database file alone (a copy, a backup, its WAL) opens no secret: the key is a separate
//! file. Losing the key file makes every sealed secret unreadable (reads fail `Corrupt`, naming
//! the key); keep it with the database, or not at all with the backup you hand out.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use webhooks_core::sealing::{DATA_KEY_BYTES, DataKey};

use crate::db::DbError;

/// The key file's name, in the database file's directory.
pub const KEY_FILE: &str = "secret-key";

/// Where the key of the database at `db_path` lives.
pub fn key_path(db_path: &Path) -> PathBuf {
    match db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.join(KEY_FILE),
        None => PathBuf::from(KEY_FILE),
    }
}

/// Reads the key at `path`, creating it first if there is none. Two processes starting at once
/// agree: the file appears whole or not at all (written aside, then hard-linked into place).
pub fn load_or_create(path: &Path) -> Result<DataKey, DbError> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(unavailable(path, e)),
    }
    let mut key = [0u8; DATA_KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    let aside = path.with_extension(format!("tmp-{}", std::process::id()));
    write_private(&aside, &URL_SAFE_NO_PAD.encode(key)).map_err(|e| unavailable(&aside, e))?;
    let linked = std::fs::hard_link(&aside, path);
    // The aside name is ours alone; if removing it fails, a stray file is all that is left.
    if let Err(e) = std::fs::remove_file(&aside) {
        tracing::warn!(path = %aside.display(), error = %e, "temporary key file not removed");
    }
    match linked {
        Ok(()) => DataKey::fingerprinted(&key).map_err(|e| unusable(path, e)),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|e| unavailable(path, e))?;
            parse(path, &text)
        }
        Err(e) => Err(unavailable(path, e)),
    }
}

fn parse(path: &Path, text: &str) -> Result<DataKey, DbError> {
    let key = URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()
        .filter(|k| k.len() == DATA_KEY_BYTES)
        .ok_or_else(|| unusable(path, "not a 32-byte key in base64url"))?;
    DataKey::fingerprinted(&key).map_err(|e| unusable(path, e))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> DbError {
    DbError::Unavailable(format!("secret key {}: {e}", path.display()))
}

fn unusable(path: &Path, e: impl std::fmt::Display) -> DbError {
    DbError::Unusable(format!("secret key {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_file_is_created_once_0600_and_read_back_the_same() {
        // GIVEN an empty directory
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir.path().join("webhooks.db"));
        // WHEN the key is loaded twice
        let first = load_or_create(&path).expect("created");
        let second = load_or_create(&path).expect("read");
        // THEN it is the same key, in a file only its owner can read, with nothing left aside
        assert_eq!(first.reference(), second.reference());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_key_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "too-short").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, DbError::Unusable(_)), "{err:?}");
        assert!(err.to_string().contains("secret-key"), "{err}");
    }
}
