//! Cross-field rules, one function each, and the resolved [`Model`] the expander works from.
//! Every rule reports through the [`Ctxt`] and carries on, so one compile shows every mistake.

use syn::{Ident, LitStr, Path};

use crate::ast::{Field, Input};
use crate::attr::did_you_mean;
use crate::ctxt::Ctxt;
use crate::naming::{default_event_name, invalid_tokens};

/// Everything the expander needs, already checked.
pub struct Model<'a> {
    pub input: &'a Input<'a>,
    pub name: String,
    pub version: u32,
    pub aggregate: String,
    /// The subject below the runtime's prefix, e.g. `quiz.submitted.v2`.
    pub subject: String,
    pub aggregate_id: &'a Field<'a>,
    pub data_subjects: Vec<&'a Field<'a>>,
    /// Each PII field with the data-subject field that owns it.
    pub pii: Vec<(&'a Field<'a>, &'a Field<'a>)>,
    pub krate: Path,
}

pub fn check<'a>(cx: &Ctxt, input: &'a Input<'a>) -> Option<Model<'a>> {
    let name = check_name(cx, input);
    let version = check_version(cx, input);
    let aggregate = check_aggregate(cx, input, &name);
    let subject = check_subject(cx, input, &name, version);
    check_upcast_source(cx, input, version);
    let aggregate_id = check_exactly_one_aggregate_id(cx, input);
    let pii = check_pii_owners(cx, input);
    check_pii_types_are_marked(cx, input);
    Some(Model {
        input,
        name: name?,
        version: version?,
        aggregate: aggregate?,
        subject: subject?,
        aggregate_id: aggregate_id?,
        data_subjects: input.data_subject_fields().collect(),
        pii: pii?,
        krate: input
            .attrs
            .krate
            .get()
            .cloned()
            .unwrap_or_else(|| syn::parse_quote!(::edupulse_events)),
    })
}

/// A name string must be a valid run of subject tokens; the error points at the literal.
fn checked_tokens(cx: &Ctxt, what: &str, lit: &LitStr) -> Option<String> {
    let value = lit.value();
    match invalid_tokens(&value) {
        None => Some(value),
        Some(why) => {
            cx.error_spanned_by(lit, format!("invalid event {what} \"{value}\": {why}"));
            None
        }
    }
}

// The event name defaults to the type name split at case changes: QuizSubmitted → quiz.submitted.
fn check_name(cx: &Ctxt, input: &Input) -> Option<String> {
    match input.attrs.name.get() {
        Some(lit) => checked_tokens(cx, "name", lit),
        None => {
            let name = default_event_name(&input.ident.to_string());
            match invalid_tokens(&name) {
                None => Some(name),
                Some(why) => {
                    cx.error_spanned_by(
                        input.ident,
                        format!(
                            "the default event name \"{name}\" is invalid ({why}); \
                             set one with #[event(name = \"...\")]"
                        ),
                    );
                    None
                }
            }
        }
    }
}

// Versions start at 1 so that "no version" can never be confused with a real one.
fn check_version(cx: &Ctxt, input: &Input) -> Option<u32> {
    let Some(lit) = input.attrs.version.get() else {
        return Some(1);
    };
    match lit.base10_parse::<u32>() {
        Ok(0) => {
            cx.error_spanned_by(
                lit,
                "event versions start at 1; write #[event(version = 1)]",
            );
            None
        }
        Ok(version) => Some(version),
        Err(err) => {
            cx.error_spanned_by(lit, format!("invalid event version: {err}"));
            None
        }
    }
}

// `upcast_from` names the type of an older version of this event, so it needs a version below
// this one, and it cannot be this very type: that chain would never reach an end. A path the
// derive cannot see through (an alias) is caught by `Registry`, which refuses such a chain.
fn check_upcast_source(cx: &Ctxt, input: &Input, version: Option<u32>) {
    let attr = &input.attrs.upcast_from;
    let (Some(key), Some(from)) = (attr.key_path(), attr.get()) else {
        return;
    };
    let at = quote::quote!(#key #from);
    if names_itself(from, input.ident) {
        cx.error_spanned_by(
            at,
            format!(
                "`upcast_from` names `{}` itself, but an event cannot upcast from its own type; \
                 name the type of the version before this one",
                input.ident
            ),
        );
    } else if version == Some(1) {
        cx.error_spanned_by(
            at,
            "`upcast_from` needs an older version to upcast from, but this is version 1; \
             set `version = 2` or more",
        );
    }
}

/// `Self`, the bare type name, or `self::` and the type name: paths that can only mean this type.
fn names_itself(path: &Path, ident: &Ident) -> bool {
    let segments: Vec<&Ident> = path.segments.iter().map(|s| &s.ident).collect();
    match (path.leading_colon, segments.as_slice()) {
        (None, [only]) => *only == "Self" || *only == ident,
        (None, [module, only]) => *module == "self" && *only == ident,
        _ => false,
    }
}

// The aggregate type defaults to the name's first token: quiz.submitted → quiz.
fn check_aggregate(cx: &Ctxt, input: &Input, name: &Option<String>) -> Option<String> {
    match input.attrs.aggregate.get() {
        Some(lit) => checked_tokens(cx, "aggregate", lit),
        None => name
            .as_deref()
            .map(|n| n.split('.').next().unwrap_or(n).to_owned()),
    }
}

// The subject below the prefix defaults to `{name}.v{version}`.
fn check_subject(
    cx: &Ctxt,
    input: &Input,
    name: &Option<String>,
    version: Option<u32>,
) -> Option<String> {
    match input.attrs.subject.get() {
        Some(lit) => checked_tokens(cx, "subject", lit),
        None => Some(format!("{}.v{}", name.as_deref()?, version?)),
    }
}

// Exactly one field identifies the aggregate: it orders the event in its stream.
fn check_exactly_one_aggregate_id<'a>(cx: &Ctxt, input: &'a Input<'a>) -> Option<&'a Field<'a>> {
    let mut marked = input
        .fields
        .iter()
        .filter(|f| f.attrs.aggregate_id.get().is_some());
    let first = marked.next();
    for extra in marked {
        let first = first.expect("a second implies a first");
        cx.error_spanned_by(
            extra.attrs.aggregate_id.key_path(),
            format!(
                "duplicate #[event(aggregate_id)]: `{}` already identifies the aggregate; \
                 an event belongs to exactly one aggregate",
                first.ident
            ),
        );
    }
    if first.is_none() {
        cx.error_spanned_by(
            input.ident,
            "missing #[event(aggregate_id)]: mark the field that identifies the aggregate this \
             event belongs to (a Uuid or a newtype over one)",
        );
    }
    first
}

// Every PII field is encrypted with one person's key, so each must resolve to exactly one
// data-subject field; ids themselves stay in clear so erasure can find them.
fn check_pii_owners<'a>(
    cx: &Ctxt,
    input: &'a Input<'a>,
) -> Option<Vec<(&'a Field<'a>, &'a Field<'a>)>> {
    let subjects: Vec<&Field> = input.data_subject_fields().collect();
    let mut pairs = Vec::new();
    let mut ok = true;
    for field in &input.fields {
        let Some(pii) = field.attrs.pii.get() else {
            continue;
        };
        let key = field.attrs.pii.key_path();
        if field.serde.flatten {
            cx.error_spanned_by(
                key,
                "a #[serde(flatten)] field cannot be #[event(pii)]: its keys join the payload's, \
                 so there is no one value to seal; make it a plain field",
            );
            ok = false;
            continue;
        }
        if field.attrs.aggregate_id.get().is_some() || field.attrs.data_subject.get().is_some() {
            cx.error_spanned_by(
                key,
                "an id field cannot be #[event(pii)]: aggregate and data-subject ids stay in \
                 clear so the log can be indexed and erased by them",
            );
            ok = false;
            continue;
        }
        let owner = match &pii.owner {
            Some(owner) => resolve_owner(cx, input, owner),
            None => match subjects.as_slice() {
                [only] => Some(*only),
                [] => {
                    cx.error_spanned_by(
                        key,
                        "#[event(pii)] needs a data subject: mark the field holding the id of the \
                         person this data belongs to with #[event(data_subject)]",
                    );
                    None
                }
                several => {
                    let names: Vec<String> =
                        several.iter().map(|f| format!("`{}`", f.ident)).collect();
                    cx.error_spanned_by(
                        key,
                        format!(
                            "this event has several data subjects ({}); name the one this data \
                             belongs to: #[event(pii(owner = {}))]",
                            names.join(", "),
                            several[0].ident
                        ),
                    );
                    None
                }
            },
        };
        match owner {
            Some(owner) => pairs.push((field, owner)),
            None => ok = false,
        }
    }
    ok.then_some(pairs)
}

fn resolve_owner<'a>(cx: &Ctxt, input: &'a Input<'a>, owner: &Ident) -> Option<&'a Field<'a>> {
    let Some(field) = input.field_named(owner) else {
        let names: Vec<String> = input.fields.iter().map(|f| f.ident.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = did_you_mean(&owner.to_string(), &names)
            .map(|best| format!("; did you mean `{best}`?"))
            .unwrap_or_default();
        cx.error_spanned_by(
            owner,
            format!("pii owner `{owner}` is not a field of this struct{hint}"),
        );
        return None;
    };
    if field.attrs.data_subject.get().is_none() {
        cx.error_spanned_by(
            owner,
            format!(
                "pii owner `{owner}` is not a data subject; mark it #[event(data_subject)] or \
                 name a field that is"
            ),
        );
        return None;
    }
    Some(field)
}

// A `Pii<T>` value serializes as the bare value: only a field marked #[event(pii)] is sealed,
// so an unmarked one would be stored and published in clear.
fn check_pii_types_are_marked(cx: &Ctxt, input: &Input) {
    for field in &input.fields {
        if field.attrs.pii.get().is_none()
            && mentions_pii(quote::ToTokens::to_token_stream(field.ty))
        {
            cx.error_spanned_by(
                field.ty,
                "`Pii` marks personal data, but this field is not #[event(pii)], so its value \
                 would be stored and published in clear; add #[event(pii)] (a Pii value is \
                 sealed only as a whole field of the event)",
            );
        }
    }
}

fn mentions_pii(tokens: proc_macro2::TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => ident == "Pii",
        proc_macro2::TokenTree::Group(group) => mentions_pii(group.stream()),
        _ => false,
    })
}
