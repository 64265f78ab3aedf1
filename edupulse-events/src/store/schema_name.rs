//! Choosing the store's schema on a connection. PostgreSQL's `search_path` is a list: a name
//! with a comma given to it unquoted silently becomes two schemas, and the store then runs in
//! whichever exists (often `public`). So the name is checked and quoted as one identifier.

use sqlx::postgres::PgConnectOptions;
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
/// use sqlx::postgres::PgConnectOptions;
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
    Ok(options.options([("search_path", quote_ident(schema))]))
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
