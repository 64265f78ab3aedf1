//! The names serde puts on the wire. PII paths, data-subject paths and the JSON Schema must use
//! the serialized names, not the Rust ones, or a `#[serde(rename)]` would silently hide a PII
//! field from encryption. Only the attributes that change a field's key are read; everything
//! else serde accepts is ignored here, and serde itself reports serde's mistakes.

use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Lit, Meta, Token};

use crate::symbol::SERDE;

/// What serde's field attributes say about one field's place in the JSON object.
#[derive(Default)]
pub struct SerdeField {
    pub rename: Option<String>,
    pub skip: bool,
    pub default: bool,
    pub flatten: bool,
}

/// Container-level `#[serde(rename_all = "...")]`.
#[derive(Default)]
pub struct SerdeContainer {
    pub rename_all: Option<String>,
}

fn serde_metas(attrs: &[Attribute]) -> Vec<Meta> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident(SERDE))
        .filter_map(|a| {
            a.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()
        })
        .flatten()
        .collect()
}

fn string_value(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => Some(s.value()),
            _ => None,
        },
        _ => None,
    }
}

/// `rename = "x"` or `rename(serialize = "x", ...)`: the serialized name is the one stored.
fn rename_value(meta: &Meta) -> Option<String> {
    match meta {
        Meta::NameValue(nv) => string_value(&nv.value),
        Meta::List(list) => list
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .ok()?
            .into_iter()
            .find_map(|inner| match inner {
                Meta::NameValue(nv) if nv.path.is_ident("serialize") => string_value(&nv.value),
                _ => None,
            }),
        Meta::Path(_) => None,
    }
}

impl SerdeContainer {
    pub fn from_attrs(attrs: &[Attribute]) -> Self {
        let mut out = SerdeContainer::default();
        for meta in serde_metas(attrs) {
            if meta.path().is_ident("rename_all") {
                out.rename_all = rename_value(&meta);
            }
        }
        out
    }

    /// The key serde writes for a field, applying a field rename before `rename_all`.
    pub fn wire_name(&self, rust_name: &str, field: &SerdeField) -> String {
        if let Some(rename) = &field.rename {
            return rename.clone();
        }
        match &self.rename_all {
            Some(rule) => apply_rename_rule(rule, rust_name),
            None => rust_name.to_owned(),
        }
    }
}

impl SerdeField {
    pub fn from_attrs(attrs: &[Attribute]) -> Self {
        let mut out = SerdeField::default();
        for meta in serde_metas(attrs) {
            let path = meta.path();
            if path.is_ident("rename") {
                out.rename = rename_value(&meta);
            } else if path.is_ident("skip") || path.is_ident("skip_serializing") {
                out.skip = true;
            } else if path.is_ident("default") {
                out.default = true;
            } else if path.is_ident("flatten") {
                out.flatten = true;
            }
        }
        out
    }
}

/// serde's `rename_all` rules, applied to a snake_case field name.
fn apply_rename_rule(rule: &str, field: &str) -> String {
    let words: Vec<&str> = field.split('_').filter(|w| !w.is_empty()).collect();
    let capitalize = |w: &str| {
        let mut chars = w.chars();
        chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect::<String>())
            .unwrap_or_default()
    };
    match rule {
        "lowercase" => field.to_lowercase(),
        "UPPERCASE" => field.to_uppercase(),
        "PascalCase" => words.iter().map(|w| capitalize(w)).collect(),
        "camelCase" => words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    (*w).to_owned()
                } else {
                    capitalize(w)
                }
            })
            .collect(),
        "SCREAMING_SNAKE_CASE" => field.to_uppercase(),
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.replace('_', "-").to_uppercase(),
        _ => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::apply_rename_rule;

    #[test]
    fn rename_rules_match_serde() {
        assert_eq!(
            apply_rename_rule("camelCase", "student_name"),
            "studentName"
        );
        assert_eq!(
            apply_rename_rule("PascalCase", "student_name"),
            "StudentName"
        );
        assert_eq!(
            apply_rename_rule("kebab-case", "student_name"),
            "student-name"
        );
        assert_eq!(
            apply_rename_rule("SCREAMING_SNAKE_CASE", "student_name"),
            "STUDENT_NAME"
        );
    }
}
