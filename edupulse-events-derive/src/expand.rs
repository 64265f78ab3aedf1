//! Code generation. Output names only `#krate::__private::*` and `::core::*` paths, so a user's
//! crate needs no dependency but `edupulse-events` (and serde for its own derives).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Type};

use crate::ast::{Field, Input};
use crate::check::{Model, check};
use crate::ctxt::Ctxt;
use crate::fallback;

pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let model = Input::from_syn(&cx, input);
    let expanded = model
        .as_ref()
        .and_then(|input| check(&cx, input))
        .map(|model| expand(&model));
    match (cx.check(), expanded) {
        (Ok(()), Some(tokens)) => tokens,
        (Err(err), _) => {
            let mut tokens = err.to_compile_error();
            // A union can implement none of DomainEvent's supertraits, and a generic struct
            // cannot get a non-generic stub: either would only add errors.
            if !matches!(input.data, syn::Data::Union(_)) && input.generics.params.is_empty() {
                tokens.extend(fallback::expand(input));
            }
            tokens
        }
        (Ok(()), None) => unreachable!("a check failed without reporting an error"),
    }
}

fn expand(model: &Model) -> TokenStream {
    let input = model.input;
    let ident = input.ident;
    let ident_str = ident.to_string();
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let name = &model.name;
    let version = model.version;
    let type_str = format!("{}.v{}", model.name, model.version);
    let aggregate = &model.aggregate;
    let subject = &model.subject;
    let subject_tokens = model.subject.split('.');

    let aggregate_id_field = field_name(&p, model.aggregate_id);
    let aggregate_id = aggregate_id_expr(&p, model.aggregate_id);
    let aggregate_id_ty = model.aggregate_id.ty;
    let data_subject_fields = model.data_subjects.iter().map(|f| field_name(&p, f));
    let extend_subjects = model.data_subjects.iter().map(|f| {
        let member = f.ident;
        let ty = f.ty;
        quote_spanned! {ty.span()=>
            <#ty as #p::SubjectIds>::extend_subject_ids(&self.#member, &mut ids);
        }
    });
    let pii_fields = model.pii.iter().map(|(field, owner)| {
        let field = field_name(&p, field);
        let owner = field_name(&p, owner);
        quote!(#p::PiiField::new(#field, #owner))
    });
    // What each PII field holds once its owner is erased: the type's own erased form, or the
    // replacement the attribute declares. Spanned at the type or the expression, so a type that
    // cannot represent erasure is reported where the user must change it.
    let erased_arms = model.pii.iter().enumerate().map(|(index, (field, _))| {
        let ty = field.ty;
        let erased = field.attrs.pii.get().and_then(|pii| pii.erased.as_ref());
        let value = match erased {
            Some(expr) => quote_spanned! {expr.span()=>
                #p::privacy::replacement_json::<#ty>(#expr)
            },
            None => quote_spanned! {ty.span()=>
                <#ty as #p::privacy::Erasable>::erased_json()
            },
        };
        quote!(#index => #value,)
    });
    let owner_checks = model.pii.iter().map(|(_, owner)| {
        let ty = owner.ty;
        quote_spanned!(ty.span()=> #p::privacy::assert_pii_owner::<#ty>();)
    });
    let debug_fields = input.fields.iter().map(|f| {
        let member = f.ident;
        let label = f.ident.to_string();
        if f.attrs.pii.get().is_some() {
            // `<erased>` for an erased `Pii`, `<pii>` otherwise; see `privacy::probe`.
            quote!(.field(#label, (&#p::privacy::PiiDebug(&self.#member)).pii_debug()))
        } else {
            quote_spanned!(f.ty.span()=> .field(#label, &self.#member))
        }
    });
    // The syntactic check in `check` cannot see `Pii` behind an alias or a renamed import; the
    // compiler can. Spanned at the type, so the error points at the field to mark.
    let unmarked_checks = input
        .fields
        .iter()
        .filter(|f| f.attrs.pii.get().is_none())
        .map(|f| {
            let ty = f.ty;
            quote_spanned! {ty.span()=>
                #p::privacy::assert_not_pii((&#p::privacy::UnmarkedField::<#ty>::PROBE).pii_check());
            }
        });
    let upcast = match input.attrs.upcast_from.get() {
        Some(from) => {
            // The `From` bound is on the newer type; naming it with the path's span puts a
            // missing impl's error on `upcast_from = ...`, where the user looks.
            let newer = syn::Ident::new(&ident.to_string(), from.span());
            quote_spanned! {from.span()=>
                #p::Option::Some(#p::Upcast::new::<#from, #newer>())
            }
        }
        None => quote!(#p::Option::None),
    };
    let schema_fields = input
        .fields
        .iter()
        .filter(|f| !f.serde.skip)
        .map(|f| schema_field(&p, f));

    quote! {
        #[automatically_derived]
        #[allow(unused_qualifications, non_upper_case_globals)]
        const _: () = {
            impl #p::DomainEvent for #ident {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                const TYPE: &'static str = #type_str;
                const AGGREGATE: &'static str = #aggregate;
                const SUBJECT: &'static str = #subject;
                const SUBJECT_TOKENS: &'static [&'static str] = &[#(#subject_tokens),*];
                const AGGREGATE_ID_FIELD: #p::FieldName = #aggregate_id_field;
                const DATA_SUBJECT_FIELDS: &'static [#p::FieldName] = &[#(#data_subject_fields),*];
                const PII_FIELDS: &'static [#p::PiiField] = &[#(#pii_fields),*];
                type AggregateId = #aggregate_id_ty;

                fn aggregate_id(&self) -> #p::Uuid {
                    #aggregate_id
                }

                fn data_subjects(&self) -> #p::Vec<#p::Uuid> {
                    let mut ids = #p::Vec::new();
                    #(#extend_subjects)*
                    ids
                }

                fn descriptor() -> &'static #p::EventDescriptor {
                    &__DESCRIPTOR
                }
            }

            // PII is masked so that `{:?}` in a log line or panic message cannot leak it.
            impl ::core::fmt::Debug for #ident {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    #[allow(unused_imports)]
                    use #p::privacy::{PiiDebugErasable as _, PiiDebugOpaque as _};
                    f.debug_struct(#ident_str)
                        #(#debug_fields)*
                        .finish()
                }
            }

            fn __erased_pii(index: usize) -> #p::JsonValue {
                match index {
                    #(#erased_arms)*
                    _ => #p::JsonValue::Null,
                }
            }

            // Never called: the bounds are the check.
            #[allow(dead_code)]
            fn __pii_owners_hold_one_id() {
                #(#owner_checks)*
            }

            // Never called: the bounds are the check.
            #[allow(dead_code, unused_imports)]
            fn __unmarked_fields_hold_no_pii() {
                use #p::privacy::{UnmarkedHoldsNoPii as _, UnmarkedHoldsPii as _};
                #(#unmarked_checks)*
            }

            fn __payload_schema() -> #p::JsonValue {
                #p::schema::object_schema(#ident_str, &[#(#schema_fields),*])
            }

            static __DESCRIPTOR: #p::EventDescriptor = #p::EventDescriptor::new::<#ident>(
                ::core::concat!(::core::module_path!(), "::", #ident_str),
                #upcast,
                __payload_schema,
                __erased_pii,
            );

            #p::inventory::submit! {
                #p::Registration(&__DESCRIPTOR)
            }
        };
    }
}

fn field_name(p: &TokenStream, field: &Field) -> TokenStream {
    let rust = field.ident.to_string();
    let wire = &field.wire_name;
    quote!(#p::FieldName::new(#rust, #wire))
}

/// Spanned at the field's type, so a wrong type is reported where the user must change it.
fn aggregate_id_expr(p: &TokenStream, field: &Field) -> TokenStream {
    let member = field.ident;
    let ty = field.ty;
    quote_spanned! {ty.span()=>
        <#ty as #p::EntityId>::entity_uuid(&self.#member)
    }
}

fn schema_field(p: &TokenStream, field: &Field) -> TokenStream {
    let ty = field.ty;
    let name = &field.wire_name;
    let required = !(field.serde.default || is_option(ty));
    let pii = field.attrs.pii.get().is_some();
    let flatten = field.serde.flatten;
    let schema = quote_spanned!(ty.span()=> #p::schema::field_schema::<#ty>);
    quote! {
        #p::schema::FieldSchema {
            name: #name,
            required: #required,
            pii: #pii,
            flatten: #flatten,
            schema: #schema,
        }
    }
}

/// serde treats a missing `Option` field as `None`, so the schema must not require it.
fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Option"),
        _ => false,
    }
}
