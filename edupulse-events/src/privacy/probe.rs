//! What the derive cannot read from a field's syntax: whether its type is `Pii`, written through
//! an alias or a renamed import. Generated code asks the compiler instead, by method resolution
//! ("autoref specialization"): on a receiver `&Probe<T>`, an impl for `Probe<Pii<U>>` matches
//! first when `T` is one; otherwise the impl for `&Probe<T>`, one auto-reference away, does.
//! Both traits must be in scope at the call. Not public API. Used by generated code.

use std::fmt;
use std::marker::PhantomData;

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

/// The type of a field not marked `#[event(pii)]`, asked whether it holds `Pii` anyway.
pub struct UnmarkedField<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> UnmarkedField<T> {
    /// The probe of one field's type; it holds no value.
    pub const PROBE: Self = UnmarkedField(PhantomData);
}

/// The answer for `Pii`, `Option<Pii>` and `Vec<Pii>`: it would be written in clear.
pub struct PiiInClear;

/// The answer for every other type.
pub struct NoPii;

/// Picked when the type is `Pii` (or an `Option` or `Vec` of it).
pub trait UnmarkedHoldsPii {
    /// Whether the field would hold `Pii` in clear.
    fn pii_check(&self) -> PiiInClear;
}

impl<T> UnmarkedHoldsPii for UnmarkedField<Pii<T>> {
    fn pii_check(&self) -> PiiInClear {
        PiiInClear
    }
}

impl<T> UnmarkedHoldsPii for UnmarkedField<Option<Pii<T>>> {
    fn pii_check(&self) -> PiiInClear {
        PiiInClear
    }
}

impl<T> UnmarkedHoldsPii for UnmarkedField<Vec<Pii<T>>> {
    fn pii_check(&self) -> PiiInClear {
        PiiInClear
    }
}

/// Picked for every other type, one auto-reference further away.
pub trait UnmarkedHoldsNoPii {
    /// Whether the field would hold `Pii` in clear.
    fn pii_check(&self) -> NoPii;
}

impl<T: ?Sized> UnmarkedHoldsNoPii for &UnmarkedField<T> {
    fn pii_check(&self) -> NoPii {
        NoPii
    }
}

/// Implemented only by `NoPii`: the bound that turns the answer into a compile error.
#[diagnostic::on_unimplemented(
    message = "this field holds `Pii` but is not #[event(pii)], so its value would be stored \
               and published in clear",
    label = "a `Pii` type, under another name",
    note = "add #[event(pii)] to the field: only a field marked so is sealed with its owner's key"
)]
pub trait NotPii {}

impl NotPii for NoPii {}

/// Compiles only when the field's type is not `Pii` under another name.
pub fn assert_not_pii<Answer: NotPii>(_: Answer) {}
