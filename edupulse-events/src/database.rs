//! Database errors as the library shows them: by SQLSTATE and schema object, never by the
//! values the server quoted. Beneath every layer that talks to a database.

use std::fmt;

/// A failure of PostgreSQL or of the connection to it.
///
/// Shown by its SQLSTATE and the schema objects involved, never by PostgreSQL's own text: its
/// message and DETAIL quote the offending values (`invalid input syntax for type uuid:
/// "<value>"`, `Key (...)=(<values>)`), and values are where personal data lives. Call
/// [`DatabaseError::into_inner`] for the driver's full error where that is acceptable.
pub struct DatabaseError(sqlx::Error);

impl From<sqlx::Error> for DatabaseError {
    fn from(err: sqlx::Error) -> Self {
        DatabaseError(err)
    }
}

impl DatabaseError {
    /// The SQLSTATE, for errors the server reported.
    pub fn code(&self) -> Option<String> {
        self.0
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .map(std::borrow::Cow::into_owned)
    }

    /// The constraint that refused the statement, if any.
    pub fn constraint(&self) -> Option<&str> {
        self.0.as_database_error().and_then(|db| db.constraint())
    }

    /// The driver's error, with everything the server said.
    pub fn into_inner(self) -> sqlx::Error {
        self.0
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Redacted(&self.0), f)
    }
}

/// Shows a driver error the way [`DatabaseError`] does, without the values the server quoted,
/// for errors that are only borrowed (a handler's, before it is stored as a reason).
pub(crate) struct Redacted<'a>(pub(crate) &'a sqlx::Error);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if matches!(self.0, sqlx::Error::PoolTimedOut) {
            // sqlx says only that it timed out; the cause is nearly always a held connection.
            return f.write_str(
                "no database connection became free within the pool's acquire timeout: each \
                 is held by work still running, or by a transaction still open (a task that \
                 waits while holding one itself waits for ever: commit or roll it back before \
                 using the store or its pool again; the in-memory SQLite store has a single \
                 connection), or the pool is too small for the load",
            );
        }
        let Some(db) = self.0.as_database_error() else {
            // Connection, pool and protocol failures carry no row data.
            return fmt::Display::fmt(self.0, f);
        };
        write!(
            f,
            "the database refused the statement (SQLSTATE {})",
            db.code().as_deref().unwrap_or("unknown")
        )?;
        if let Some(table) = db.table() {
            write!(f, " on table {table}")?;
        }
        if let Some(constraint) = db.constraint() {
            write!(f, ", constraint {constraint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseError")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl std::error::Error for DatabaseError {}
