//! What is emitted beside the compile errors: a stub impl, so uses of the type elsewhere in the
//! crate do not add "trait not implemented" errors that bury the real one.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub fn expand(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let ident_str = ident.to_string();
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let p = quote!(::edupulse_events::__private);
    quote! {
        #[automatically_derived]
        #[allow(unused_qualifications, unreachable_code)]
        const _: () = {
            impl #impl_generics #p::DomainEvent for #ident #ty_generics #where_clause {
                const NAME: &'static str = "";
                const VERSION: u32 = 0;
                const TYPE: &'static str = "";
                const AGGREGATE: &'static str = "";
                const SUBJECT: &'static str = "";
                const SUBJECT_TOKENS: &'static [&'static str] = &[];
                const AGGREGATE_ID_FIELD: #p::FieldName = #p::FieldName::new("", "");
                const DATA_SUBJECT_FIELDS: &'static [#p::FieldName] = &[];
                const PII_FIELDS: &'static [#p::PiiField] = &[];

                fn aggregate_id(&self) -> #p::Uuid {
                    ::core::unreachable!()
                }

                fn data_subjects(&self) -> #p::Vec<#p::Uuid> {
                    ::core::unreachable!()
                }

                fn descriptor() -> &'static #p::EventDescriptor {
                    ::core::unreachable!()
                }
            }

            impl #impl_generics ::core::fmt::Debug for #ident #ty_generics #where_clause {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(#ident_str)
                }
            }
        };
    }
}
