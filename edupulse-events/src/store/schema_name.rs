//! Choosing the store's schema on a connection. PostgreSQL's `search_path` is a list: a name
//! with a comma given to it unquoted silently becomes two schemas, and the store then runs in
//! whichever exists (often `public`). So the name is checked and quoted as one identifier.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use thiserror::Error;

/// A schema name PostgreSQL cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("schema name `{name}` {reason}")]
pub struct SchemaNameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// `options` whose connections look up the store's tables in `schema`, and only there.
///
/// ```
/// use edupulse_events::store::in_schema;
/// use edupulse_events::sqlx::postgres::PgConnectOptions;
///
/// let options = in_schema(PgConnectOptions::new(), "school_a").unwrap();
/// assert!(in_schema(PgConnectOptions::new(), "").is_err());
/// # let _ = options;
/// ```
pub fn in_schema(
    options: PgConnectOptions,
    schema: &str,
) -> Result<PgConnectOptions, SchemaNameError> {
    let refuse = |reason| {
        Err(SchemaNameError {
            name: schema.to_owned(),
            reason,
        })
    };
    if schema.is_empty() {
        return refuse("is empty");
    }
    // NAMEDATALEN - 1: PostgreSQL would silently truncate a longer name.
    if schema.len() > 63 {
        return refuse("is longer than PostgreSQL's 63 bytes");
    }
    if schema.contains('\0') {
        return refuse("holds a NUL byte");
    }
    if schema.chars().any(char::is_control) {
        return refuse("holds a control character (a tab, a line break, ...)");
    }
    // Sent in the startup packet's `options`, where whitespace separates arguments unless
    // escaped with a backslash (and a backslash is itself escaped): sqlx passes it as is.
    let mut value = String::new();
    for c in quote_ident(schema).chars() {
        if c == '\\' || c.is_ascii_whitespace() {
            value.push('\\');
        }
        value.push(c);
    }
    Ok(options.options([("search_path", value)]))
}

/// A pool like `pool` (its options, its server and role) whose connections use the schema
/// `schema`, created first if missing: how a service keeps its store (and its own tables) in
/// a schema of its own. The name is checked as [`in_schema`] checks it, and quoted.
/// `pool` itself is left as it was; take transactions from the returned pool.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use edupulse_events::sqlx::PgPool;
/// use edupulse_events::store::{Store, pool_in_schema};
///
/// let pool = PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// let store = Store::new(pool_in_schema(&pool, "lessons").await?, "lessons");
/// store.migrate().await?;
/// # Ok(()) }
/// ```
pub async fn pool_in_schema(pool: &PgPool, schema: &str) -> Result<PgPool, SchemaError> {
    pool_in_schema_with(pool, schema, Missing::Create).await
}

/// What to do when the schema does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Create it (the role needs CREATE on the database).
    Create,
    /// Refuse: someone else creates and migrates it.
    Refuse,
}

/// [`pool_in_schema`], creating the schema only when `missing` says so.
pub(crate) async fn pool_in_schema_with(
    pool: &PgPool,
    schema: &str,
    missing: Missing,
) -> Result<PgPool, SchemaError> {
    let options = in_schema((*pool.connect_options()).clone(), schema)?;
    let database = |err: sqlx::Error| SchemaError::Database(err.into());
    // Looked up first: `CREATE SCHEMA IF NOT EXISTS` checks the role's CREATE privilege on
    // the database before it looks, so a role without it (the usual production role) would
    // be refused a schema an administrator already made.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(pool)
            .await
            .map_err(database)?;
    if !exists {
        if missing == Missing::Refuse {
            return Err(SchemaError::Missing(schema.to_owned()));
        }
        let created = sqlx::query(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        ))
        .execute(pool)
        .await;
        match created {
            Ok(_) => {}
            // Another process created it between the look and the create.
            Err(err)
                if err
                    .as_database_error()
                    .and_then(sqlx::error::DatabaseError::code)
                    .is_some_and(|code| code == "42P06" || code == "23505") => {}
            Err(err) => return Err(SchemaError::Create(err.into())),
        }
    }
    let pool_options: PgPoolOptions = pool.options().clone();
    Ok(pool_options.connect_lazy_with(options))
}

/// Why [`pool_in_schema`] could not give a pool in the schema.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The name cannot be a PostgreSQL schema.
    #[error(transparent)]
    Name(#[from] SchemaNameError),
    /// The schema does not exist, and this process was not to create it (migrations off).
    #[error("schema `{0}` does not exist: create and migrate it, or let the runtime migrate")]
    Missing(String),
    /// The schema is missing and could not be created: the role may not create schemas
    /// (CREATE on the database). Create it as an administrator, granting the role its use.
    #[error("cannot create the schema: {0}")]
    Create(#[source] crate::database::DatabaseError),
    /// Looking the schema up failed.
    #[error("cannot look the schema up: {0}")]
    Database(#[source] crate::database::DatabaseError),
}

/// `name` as one SQL identifier: in double quotes, inner quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_quoted_identifier_never_a_list() {
        assert_eq!(quote_ident("school_a"), "\"school_a\"");
        assert_eq!(quote_ident("a,public"), "\"a,public\"");
        assert_eq!(quote_ident("say \"hi\""), "\"say \"\"hi\"\"\"");
        for bad in ["", "a\0b", "a\tb", "a\nb", &"s".repeat(64)] {
            assert!(in_schema(PgConnectOptions::new(), bad).is_err(), "{bad:?}");
        }
    }
}
