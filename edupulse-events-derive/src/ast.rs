//! The derive's input, reduced to what DomainEvent cares about. Nodes borrow the user's syntax
//! (`ident`, `ty`, attribute key paths) so every later error can point at the user's own tokens.

use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;
use crate::serde_names::{SerdeContainer, SerdeField};

/// A struct with named fields: the only shape an event can take.
pub struct Input<'a> {
    pub ident: &'a Ident,
    pub attrs: ContainerAttrs,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: FieldAttrs,
    /// The key serde writes for this field.
    pub wire_name: String,
    pub serde: SerdeField,
}

impl<'a> Input<'a> {
    /// Reads the input; `None` when its shape cannot be an event (the error is in `cx`).
    pub fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        refuse_derived_debug(cx, &input.attrs);
        let attrs = ContainerAttrs::from_attrs(cx, &input.attrs);
        let serde = SerdeContainer::from_attrs(&input.attrs);
        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(unnamed) => {
                    cx.error_spanned_by(
                        unnamed,
                        "DomainEvent needs named fields: a tuple struct has no field names to \
                         store, mark or encrypt; write `struct Name { field: Type, .. }`",
                    );
                    return None;
                }
                Fields::Unit => {
                    cx.error_spanned_by(
                        &input.ident,
                        "DomainEvent needs named fields, one of them #[event(aggregate_id)]; \
                         a unit struct has none",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "DomainEvent cannot be derived for an enum: each event type is its own \
                     struct, so its name, version and schema are fixed; derive it on one \
                     struct per variant",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "DomainEvent cannot be derived for a union; use a struct with named fields",
                );
                return None;
            }
        };
        if !input.generics.params.is_empty() {
            cx.error_spanned_by(
                &input.generics,
                "DomainEvent cannot be derived for a generic struct: the registry needs one \
                 concrete type per event name and version",
            );
        }
        let fields = named
            .named
            .iter()
            .map(|field| {
                let ident = field.ident.as_ref().expect("named field");
                let field_serde = SerdeField::from_attrs(&field.attrs);
                let rust_name = ident.to_string();
                let rust_name = rust_name.strip_prefix("r#").unwrap_or(&rust_name);
                Field {
                    ident,
                    ty: &field.ty,
                    attrs: FieldAttrs::from_attrs(cx, &field.attrs),
                    wire_name: serde.wire_name(rust_name, &field_serde),
                    serde: field_serde,
                }
            })
            .collect();
        Some(Input {
            ident: &input.ident,
            attrs,
            fields,
        })
    }

    pub fn data_subject_fields(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields
            .iter()
            .filter(|f| f.attrs.data_subject.get().is_some())
    }

    pub fn field_named(&self, name: &Ident) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.ident == name)
    }
}

/// A `Debug` derived beside `DomainEvent` would print personal data, and clashes with the
/// masked one generated here (a bare E0119 otherwise). Seen when the derive lists are separate
/// attributes or `Debug` comes after `DomainEvent`: rustc hands a derive the attributes that
/// follow its own.
fn refuse_derived_debug(cx: &Ctxt, attrs: &[syn::Attribute]) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Debug")
            {
                cx.error_spanned_by(
                    &meta.path,
                    "DomainEvent already implements `Debug`, printing personal data as `<pii>`: \
                     remove `Debug` from this derive",
                );
            }
            Ok(())
        });
    }
}
