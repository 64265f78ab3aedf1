//! Parsing of `#[event(...)]` attributes into plain values, each remembering the tokens it came
//! from so later checks can point at them. Nothing here returns early: every mistake goes into
//! the [`Ctxt`] and parsing carries on, so the user sees all of them at once.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Token};

use crate::ctxt::Ctxt;
use crate::symbol::*;

/// One attribute value plus the key token it was written with (for duplicate errors).
pub struct Attr<T> {
    key: &'static str,
    value: Option<(Path, T)>,
}

impl<T> Attr<T> {
    fn none(key: &'static str) -> Self {
        Attr { key, value: None }
    }

    /// Stores the value, or reports a duplicate at the second occurrence's key.
    fn set(&mut self, cx: &Ctxt, key_path: &Path, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(
                key_path,
                format!("duplicate event attribute `{}`", self.key),
            );
        } else {
            self.value = Some((key_path.clone(), value));
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, value)| value)
    }

    pub fn key_path(&self) -> Option<&Path> {
        self.value.as_ref().map(|(path, _)| path)
    }
}

/// `#[event(...)]` on the struct.
pub struct ContainerAttrs {
    pub name: Attr<LitStr>,
    pub version: Attr<LitInt>,
    pub aggregate: Attr<LitStr>,
    pub subject: Attr<LitStr>,
    pub upcast_from: Attr<Path>,
    pub krate: Attr<Path>,
}

/// `#[event(pii)]` or `#[event(pii(owner = field, erased = expr))]`.
pub struct PiiAttr {
    pub owner: Option<Ident>,
    /// The replacement value readers get after erasure, for a type that cannot say so itself.
    pub erased: Option<syn::Expr>,
}

/// `#[event(...)]` on a field.
pub struct FieldAttrs {
    pub aggregate_id: Attr<()>,
    pub data_subject: Attr<()>,
    pub pii: Attr<PiiAttr>,
}

impl ContainerAttrs {
    pub fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = ContainerAttrs {
            name: Attr::none(NAME),
            version: Attr::none(VERSION),
            aggregate: Attr::none(AGGREGATE),
            subject: Attr::none(SUBJECT),
            upcast_from: Attr::none(UPCAST_FROM),
            krate: Attr::none(CRATE),
        };
        for attr in attrs.iter().filter(|a| a.path().is_ident(EVENT)) {
            let result = attr.parse_nested_meta(|meta| {
                let path = meta.path.clone();
                if path.is_ident(NAME) {
                    // #[event(name = "quiz.submitted")]
                    out.name.set(cx, &path, meta.value()?.parse()?);
                } else if path.is_ident(VERSION) {
                    // #[event(version = 2)]
                    out.version.set(cx, &path, meta.value()?.parse()?);
                } else if path.is_ident(AGGREGATE) {
                    // #[event(aggregate = "quiz")]
                    out.aggregate.set(cx, &path, meta.value()?.parse()?);
                } else if path.is_ident(SUBJECT) {
                    // #[event(subject = "quiz.submissions")]
                    out.subject.set(cx, &path, meta.value()?.parse()?);
                } else if path.is_ident(UPCAST_FROM) {
                    // #[event(upcast_from = QuizSubmittedV1)]
                    out.upcast_from.set(cx, &path, meta.value()?.parse()?);
                } else if path.is_ident(CRATE) {
                    // #[event(crate = "my_reexport::edupulse_events")]
                    let lit: LitStr = meta.value()?.parse()?;
                    match lit.parse::<Path>() {
                        Ok(krate) => out.krate.set(cx, &path, krate),
                        Err(_) => cx.error_spanned_by(
                            &lit,
                            "`crate` must be a path, e.g. \"::edupulse_events\"",
                        ),
                    }
                } else if FIELD_KEYS.iter().any(|k| path.is_ident(k)) {
                    cx.error_spanned_by(
                        &path,
                        format!(
                            "not expected here; #[event({})] belongs on a field",
                            path_name(&path)
                        ),
                    );
                    skip_value(&meta)?;
                } else {
                    unknown_key(cx, &meta, "struct", CONTAINER_KEYS)?;
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }
        out
    }
}

impl FieldAttrs {
    pub fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = FieldAttrs {
            aggregate_id: Attr::none(AGGREGATE_ID),
            data_subject: Attr::none(DATA_SUBJECT),
            pii: Attr::none(PII),
        };
        for attr in attrs.iter().filter(|a| a.path().is_ident(EVENT)) {
            let result = attr.parse_nested_meta(|meta| {
                let path = meta.path.clone();
                if path.is_ident(AGGREGATE_ID) {
                    // #[event(aggregate_id)]
                    no_value(cx, &meta)?;
                    out.aggregate_id.set(cx, &path, ());
                } else if path.is_ident(DATA_SUBJECT) {
                    // #[event(data_subject)]
                    no_value(cx, &meta)?;
                    out.data_subject.set(cx, &path, ());
                } else if path.is_ident(PII) {
                    // #[event(pii)] or #[event(pii(owner = student_id))]
                    let pii = parse_pii(cx, &meta)?;
                    out.pii.set(cx, &path, pii);
                } else if CONTAINER_KEYS.iter().any(|k| path.is_ident(k)) {
                    cx.error_spanned_by(
                        &path,
                        format!(
                            "not expected here; #[event({})] belongs on the struct",
                            path_name(&path)
                        ),
                    );
                    skip_value(&meta)?;
                } else {
                    unknown_key(cx, &meta, "field", FIELD_KEYS)?;
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }
        out
    }
}

fn parse_pii(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<PiiAttr> {
    let mut owner = Attr::<Ident>::none(OWNER);
    let mut erased = Attr::<syn::Expr>::none(ERASED);
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            if inner.path.is_ident(OWNER) {
                // pii(owner = student_id)
                let ident: Ident = inner.value()?.parse()?;
                owner.set(cx, &inner.path, ident);
            } else if inner.path.is_ident(ERASED) {
                // pii(erased = String::from("[erased]"))
                let expr: syn::Expr = inner.value()?.parse()?;
                erased.set(cx, &inner.path, expr);
            } else {
                unknown_key(cx, &inner, "pii", PII_KEYS)?;
            }
            Ok(())
        })?;
    } else {
        no_value(cx, meta)?;
    }
    Ok(PiiAttr {
        owner: owner.value.map(|(_, ident)| ident),
        erased: erased.value.map(|(_, expr)| expr),
    })
}

/// Flags are written bare: `#[event(aggregate_id)]`, never `aggregate_id = true`. The flag
/// still counts, so the mistake does not also cause a "missing aggregate_id" error.
fn no_value(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        let name = path_name(&meta.path);
        cx.error_spanned_by(
            &meta.path,
            format!("`{name}` takes no value; write #[event({name})]"),
        );
        skip_value(meta)?;
    }
    Ok(())
}

/// Consumes whatever follows a key we reject, so parsing can go on to the next key.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

fn unknown_key(cx: &Ctxt, meta: &ParseNestedMeta, place: &str, known: &[&str]) -> syn::Result<()> {
    let name = path_name(&meta.path);
    let mut message = format!("unknown event {place} attribute `{name}`");
    match did_you_mean(&name, known) {
        Some(best) => message.push_str(&format!("; did you mean `{best}`?")),
        None => message.push_str(&format!("; expected one of: {}", known.join(", "))),
    }
    cx.syn_error(syn::Error::new(meta.path.span(), message));
    skip_value(meta)
}

/// The closest known key, when it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(written: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(written, candidate), *candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

pub fn path_name(path: &Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}
