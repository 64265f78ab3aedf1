//! Event names, aggregates and subjects become NATS subject tokens and CloudEvents `type`s, so
//! they are held to the strictest of those grammars here, at compile time.

/// `QuizSubmitted` → `quiz.submitted`; `HTTPRequestSeen` → `http.request.seen`.
pub fn default_event_name(type_name: &str) -> String {
    let chars: Vec<char> = type_name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower)
            {
                out.push('.');
            }
        }
        if c == '_' {
            out.push('.');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Why a dotted name is not usable as a sequence of subject tokens, or `None` when it is.
///
/// Tokens are limited to ASCII letters, digits, `_` and `-`: a superset would be legal NATS but
/// would break consumers that build filters or file names from the type string.
pub fn invalid_tokens(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("it is empty".to_owned());
    }
    for token in value.split('.') {
        if token.is_empty() {
            return Some("it has an empty token (a leading, trailing or doubled `.`)".to_owned());
        }
        if let Some(bad) = token
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            let what = match bad {
                ' ' | '\t' | '\n' | '\r' => "whitespace".to_owned(),
                '*' | '>' => format!("the NATS wildcard `{bad}`"),
                other => format!("`{other}`"),
            };
            return Some(format!(
                "token `{token}` contains {what}; tokens may use only ASCII letters, digits, `_` and `-`"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_case_changes() {
        assert_eq!(default_event_name("QuizSubmitted"), "quiz.submitted");
        assert_eq!(default_event_name("HTTPRequestSeen"), "http.request.seen");
        assert_eq!(default_event_name("Quiz2Passed"), "quiz2.passed");
    }

    #[test]
    fn wildcards_spaces_and_empty_tokens_are_rejected() {
        assert!(invalid_tokens("quiz.submitted").is_none());
        assert!(
            invalid_tokens("quiz submitted")
                .unwrap()
                .contains("whitespace")
        );
        assert!(invalid_tokens("quiz.*").unwrap().contains("wildcard"));
        assert!(invalid_tokens("quiz.>").unwrap().contains("wildcard"));
        assert!(invalid_tokens("quiz..x").unwrap().contains("empty token"));
        assert!(invalid_tokens("").is_some());
    }
}
