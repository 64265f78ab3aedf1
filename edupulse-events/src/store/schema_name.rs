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
    // Sent in the startup packet's `options`, where a space separates arguments unless
    // escaped with a backslash (and a backslash is itself escaped): sqlx passes it as is.
    let value = quote_ident(schema)
        .replace('\\', "\\\\")
        .replace(' ', "\\ ");
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
    let options = in_schema((*pool.connect_options()).clone(), schema)?;
    sqlx::query(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(schema)
    ))
    .execute(pool)
    .await
    .map_err(|err| SchemaError::Create(err.into()))?;
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
    /// `CREATE SCHEMA IF NOT EXISTS` failed (the role may not create schemas: create it as
    /// an administrator, then this only checks).
    #[error("cannot create the schema: {0}")]
    Create(#[source] crate::database::DatabaseError),
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
        for bad in ["", "a\0b", &"s".repeat(64)] {
            assert!(in_schema(PgConnectOptions::new(), bad).is_err(), "{bad:?}");
        }
    }
}
