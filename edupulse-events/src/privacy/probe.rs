//! What the derive cannot read from a field's syntax: whether its type is `Pii`, written through
//! an alias or a renamed import. Generated code asks the compiler instead, by method resolution
//! ("autoref specialization"): on a receiver `&Probe<T>`, an impl for `Probe<Pii<U>>` matches
//! first when `T` is one; otherwise the impl for `&Probe<T>`, one auto-reference away, does.
//! Both traits must be in scope at the call. Not public API. Used by generated code.

use std::fmt;

use super::Pii;
use crate::event::PiiMask;

/// A `#[event(pii)]` field on its way to the derived `Debug`.
pub struct PiiDebug<'a, T: ?Sized>(pub &'a T);

/// `Pii` and `Option<Pii>` print with their own `Debug`: `<pii>`, `<erased>`, `Some(..)` or
/// `None`, so a log line says whether the data was erased, but never what it was.
pub trait PiiDebugErasable {
    /// What the derived `Debug` prints for the field.
    fn pii_debug(&self) -> &dyn fmt::Debug;
}

impl<T> PiiDebugErasable for PiiDebug<'_, Pii<T>> {
    fn pii_debug(&self) -> &dyn fmt::Debug {
        self.0
    }
}

impl<T> PiiDebugErasable for PiiDebug<'_, Option<Pii<T>>> {
    fn pii_debug(&self) -> &dyn fmt::Debug {
        self.0
    }
}

/// Any other type (one with `pii(erased = ...)`) cannot say it was erased: `<pii>` either way.
pub trait PiiDebugOpaque {
    /// What the derived `Debug` prints for the field.
    fn pii_debug(&self) -> &dyn fmt::Debug;
}

impl<T: ?Sized> PiiDebugOpaque for &PiiDebug<'_, T> {
    fn pii_debug(&self) -> &dyn fmt::Debug {
        &PiiMask
    }
}
