//! The `#[derive(DomainEvent)]` macro of [`edupulse-events`]. Depend on `edupulse-events`, not on
//! this crate: the runtime re-exports the derive and holds every path the generated code names.
//!
//! The implementation runs in stages, each in its own module: `ast` reads the input and its
//! attributes (all errors collected in a `ctxt::Ctxt`), `check` applies the cross-field rules
//! and resolves defaults, `expand` generates code, and `fallback` emits a stub impl beside the
//! errors so they are not buried under follow-on ones.
//!
//! [`edupulse-events`]: https://docs.rs/edupulse-events

#![allow(missing_docs)]

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod naming;
mod serde_names;
mod symbol;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `edupulse_events::DomainEvent`; documented on the runtime's re-export.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
