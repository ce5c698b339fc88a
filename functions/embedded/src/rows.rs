//! What every table's adapter needs to answer with [`StoreError`]: a rusqlite error as the port's
//! error ([`store_error`], [`From<DbError>`](StoreError)), and the `Corrupt` error for a value this
//! build cannot read back, naming the row and the column ([`corrupt`], [`Columns`]).
//!
//! Messages never quote a column's value: rusqlite's name columns and types only, and callers pass
//! what is wrong (a parse error of an id or an event name, never a secret: sealed columns are
//! opened by the store, whose errors name the column only).

use std::fmt::Display;

use rusqlite::Row;
use rusqlite::types::FromSql;
use webhooks_core::ports::StoreError;

use crate::db::{DbError, Failure, classify};

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) => StoreError::Unavailable(m),
            DbError::Unusable(m) => StoreError::Corrupt(m),
        }
    }
}

/// A rusqlite error as the port's error, its message prefixed with `context` when there is one
/// (the table's name: "webhook health: database is locked"). `StoreError` has no "internal"
/// variant; anything that is not the database being unavailable means the data or the schema is
/// not what this build expects, which is what `Corrupt` says.
pub(crate) fn store_error(context: &str, e: &rusqlite::Error) -> StoreError {
    let message = if context.is_empty() {
        e.to_string()
    } else {
        format!("{context}: {e}")
    };
    match classify(e) {
        Failure::Unavailable => StoreError::Unavailable(message),
        Failure::Unusable => StoreError::Corrupt(message),
    }
}

/// `Corrupt`: `what` (e.g. "webhook", "dead letter") `key` (its id, at most 64 characters) has a
/// `column` this build cannot read, because `why`.
pub(crate) fn corrupt(what: &str, key: &str, column: &str, why: impl Display) -> StoreError {
    let key: String = key.chars().take(64).collect();
    StoreError::Corrupt(format!("{what} {key:?}: column `{column}`: {why}"))
}

/// One row being decoded into a `what` (e.g. "webhook") identified by its key column: typed reads
/// (rusqlite's `FromSql` checks type and range) whose errors are [`corrupt`] naming the row and
/// the column.
pub(crate) struct Columns<'a, 'r> {
    row: &'a Row<'r>,
    what: &'static str,
    key: String,
}

impl<'a, 'r> Columns<'a, 'r> {
    /// Reads `key_column` first, so every later error names the row (`"?"` if the key itself
    /// cannot be read).
    pub(crate) fn keyed(
        row: &'a Row<'r>,
        what: &'static str,
        key_column: &str,
    ) -> Result<Self, StoreError> {
        let key: String = row
            .get(key_column)
            .map_err(|e| corrupt(what, "?", key_column, e))?;
        Ok(Self { row, what, key })
    }

    /// The row's key, as read.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The value of `column`, or `Corrupt` naming the row and the column.
    pub(crate) fn get<T: FromSql>(&self, column: &str) -> Result<T, StoreError> {
        self.row.get(column).map_err(|e| self.corrupt(column, e))
    }

    /// `Corrupt`: this row's `column` cannot be read because `why`.
    pub(crate) fn corrupt(&self, column: &str, why: impl Display) -> StoreError {
        corrupt(self.what, &self.key, column, why)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn a_column_of_the_wrong_type_is_corrupt_naming_the_row_and_the_column_but_not_the_value() {
        // Arrange
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn
            .prepare("SELECT 'wh_1' AS id, 'not a number' AS attempts")
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        let row = rows.next().unwrap().unwrap();

        // Act
        let columns = Columns::keyed(row, "dead letter", "id").unwrap();
        let err = columns.get::<i64>("attempts").unwrap_err();

        // Assert
        let StoreError::Corrupt(message) = err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert!(
            message.starts_with("dead letter \"wh_1\": column `attempts`: "),
            "{message}"
        );
        assert!(!message.contains("not a number"), "{message}");
        assert_eq!(columns.key(), "wh_1");
    }

    #[test]
    fn an_unreadable_key_is_named_as_unknown() {
        // Arrange
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("SELECT 7 AS id").unwrap();
        let mut rows = stmt.query([]).unwrap();
        let row = rows.next().unwrap().unwrap();

        // Act
        let err = Columns::keyed(row, "webhook", "id").err().unwrap();

        // Assert
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.starts_with("webhook \"?\": column `id`: ")),
            "{err:?}"
        );
    }

    #[test]
    fn a_long_key_is_cut_to_64_characters() {
        let err = corrupt("webhook", &"x".repeat(100), "url", "bad");
        let StoreError::Corrupt(message) = err else {
            panic!("expected Corrupt");
        };
        assert_eq!(
            message,
            format!("webhook {:?}: column `url`: bad", "x".repeat(64))
        );
    }
}
