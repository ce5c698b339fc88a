//! What can go wrong with the embedded database ([`DbError`]), and what a rusqlite error means for
//! the caller ([`classify`]): retryable (the database could not answer now) or not (the data or
//! the file is not what this build expects). Each adapter maps these to its port's error.

use rusqlite::ErrorCode;

/// Why the database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// It cannot answer now: locked by another connection past the busy timeout, an I/O error, a
    /// full disk, a file that cannot be opened or written. Trying again later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The file is not one this build can use: corrupt, not SQLite, or its schema is newer than
    /// this build knows.
    #[error("database unusable: {0}")]
    Unusable(String),
}

impl DbError {
    pub(crate) fn from_sqlite(context: &str, e: &rusqlite::Error) -> Self {
        let message = format!("{context}: {e}");
        match classify(e) {
            Failure::Unavailable => DbError::Unavailable(message),
            Failure::Unusable => DbError::Unusable(message),
        }
    }
}

/// What a rusqlite error means for the caller, so each adapter can map it to its port's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The database could not answer now (busy, locked, I/O, full, unopenable). Retryable.
    Unavailable,
    /// The data, the file or a value does not fit what this build expects. Not retryable.
    Unusable,
}

/// Classifies a rusqlite error. rusqlite's messages name columns, types and constraints, never
/// the values bound or read, so they are safe to put in an error message (no secrets).
pub(crate) fn classify(e: &rusqlite::Error) -> Failure {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OperationInterrupted
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::SchemaChanged,
        ) => Failure::Unavailable,
        // Corrupt or foreign files, constraint and type violations, conversions of values read or
        // written, SQL that does not match the schema: all say the data is not what we expect.
        _ => Failure::Unusable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_io_failures_are_unavailable_and_data_failures_unusable() {
        let sqlite = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_FULL,
        ] {
            assert_eq!(classify(&sqlite(code)), Failure::Unavailable, "code {code}");
        }
        for code in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_NOTADB] {
            assert_eq!(classify(&sqlite(code)), Failure::Unusable, "code {code}");
        }
        let decode =
            rusqlite::Error::InvalidColumnType(0, "events".into(), rusqlite::types::Type::Integer);
        assert_eq!(classify(&decode), Failure::Unusable);
    }
}
