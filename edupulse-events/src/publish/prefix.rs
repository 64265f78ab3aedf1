//! The subject prefix every event is published under, checked before anything subscribes or
//! provisions with it: a stream capturing `*.>` takes `$JS.API.>` and breaks JetStream for the
//! whole account, and one under `_INBOX` takes every reply.

use thiserror::Error;

/// Why a subject prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("subject prefix `{prefix}` {reason}")]
pub struct PrefixError {
    /// The prefix given.
    pub prefix: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks `prefix` as NATS subject tokens (`.`-separated, none empty, no wildcards, spaces or
/// control characters) outside the namespaces NATS reserves (`$…`, `_INBOX`).
///
/// ```
/// use edupulse_events::publish::validate_prefix;
///
/// assert!(validate_prefix("edupulse.prod").is_ok());
/// assert!(validate_prefix("*").is_err());
/// assert!(validate_prefix("_INBOX.x").is_err());
/// ```
pub fn validate_prefix(prefix: &str) -> Result<(), PrefixError> {
    let refuse = |reason| {
        Err(PrefixError {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if prefix.is_empty() {
        return refuse("is empty");
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return refuse("has an empty token (a leading, trailing or doubled `.`)");
        }
        if token == "*" || token == ">" || token.contains(['*', '>']) {
            return refuse(
                "holds a wildcard (`*` or `>`): the stream would capture other subjects",
            );
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return refuse("holds a space or a control character");
        }
    }
    let first = prefix.split('.').next().unwrap_or_default();
    if first.starts_with('$') {
        return refuse("starts with `$`, a namespace NATS reserves ($JS, $SYS, $KV, ...)");
    }
    if first == "_INBOX" {
        return refuse("starts with `_INBOX`, where NATS clients receive replies");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_that_would_capture_other_subjects_are_refused() {
        for ok in ["edupulse", "edupulse.prod", "t01a2b", "school-1.events"] {
            assert_eq!(validate_prefix(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "*",
            ">",
            "a.*",
            "a.>",
            "a*",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a\tb",
            "$JS",
            "$SYS.x",
            "_INBOX",
            "_INBOX.abc",
        ] {
            let err = validate_prefix(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }
}
