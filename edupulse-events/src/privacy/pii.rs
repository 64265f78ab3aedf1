//! `Pii<T>`: a personal-data field whose type says whether the value is still there. Erasure
//! destroys the key, so a reader must be able to get "erased" back instead of a decoding error
//! or a silent placeholder that looks like real data.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::form::SEALED_MARKER;
use super::guard::{self, Mode};

/// What an erased field holds in a payload (and what a scrub writes over the ciphertext):
/// `{"$pii": "erased"}`. Under the same member as a sealed value, so SQL and non-Rust readers
/// see one convention.
pub(super) const ERASED: &str = "erased";

/// The JSON of an erased value.
pub fn erased_json() -> Value {
    json!({ SEALED_MARKER: ERASED })
}

/// Whether `value` is the erased marker.
pub(crate) fn is_erased_json(value: &Value) -> bool {
    value
        .as_object()
        .filter(|object| object.len() == 1)
        .and_then(|object| object.get(SEALED_MARKER))
        .and_then(Value::as_str)
        == Some(ERASED)
}

/// A personal-data value, or the fact that it was erased.
///
/// Declare `#[event(pii)]` fields with this type: the store seals the value with its owner's
/// key, and after the owner is erased the event still decodes, with `Pii::Erased` in place of
/// the value. `Debug` never shows the value.
///
/// ```
/// use edupulse_events::privacy::Pii;
///
/// let name = Pii::from("Ada".to_owned());
/// assert_eq!(name.present().map(String::as_str), Some("Ada"));
/// assert_eq!(format!("{name:?}"), "<pii>");
/// assert!(Pii::<String>::Erased.is_erased());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pii<T> {
    /// The value, readable.
    Present(T),
    /// Its owner was erased: the value can never be read again.
    Erased,
}

impl<T> Pii<T> {
    /// The value, unless it was erased.
    pub fn present(&self) -> Option<&T> {
        match self {
            Pii::Present(value) => Some(value),
            Pii::Erased => None,
        }
    }

    /// The value by move, unless it was erased.
    pub fn into_present(self) -> Option<T> {
        match self {
            Pii::Present(value) => Some(value),
            Pii::Erased => None,
        }
    }

    /// Whether the owner was erased.
    pub fn is_erased(&self) -> bool {
        matches!(self, Pii::Erased)
    }

    /// Maps the value, keeping `Erased` as it is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Pii<U> {
        match self {
            Pii::Present(value) => Pii::Present(f(value)),
            Pii::Erased => Pii::Erased,
        }
    }
}

impl<T> From<T> for Pii<T> {
    fn from(value: T) -> Self {
        Pii::Present(value)
    }
}

impl From<&str> for Pii<String> {
    fn from(value: &str) -> Self {
        Pii::Present(value.to_owned())
    }
}

impl<T> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pii::Present(_) => f.write_str("<pii>"),
            Pii::Erased => f.write_str("<erased>"),
        }
    }
}

/// A present value serializes only where something will seal it: inside
/// [`Envelope::new`](crate::Envelope::new), marked for the envelope to place at its known
/// personal-data field, or inside [`reveal`](super::reveal) on
/// purpose. Anywhere else it is an error, so a `Pii` the derive could not see (an alias, a
/// nested struct, a flattened one) is refused instead of stored in clear.
impl<T: Serialize> Serialize for Pii<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap as _};

        let value = match self {
            Pii::Present(value) => value,
            Pii::Erased => return erased_json().serialize(serializer),
        };
        match guard::mode() {
            Mode::Reveal => value.serialize(serializer),
            Mode::Mark => {
                guard::count_marked();
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(guard::MARKER, value)?;
                map.end()
            }
            Mode::Refuse => Err(S::Error::custom(
                "a present Pii value is serialized only by Envelope::new, for a field the \
                 derive knows as #[event(pii)], or inside privacy::reveal",
            )),
        }
    }
}

/// Reads the erased marker as `Erased` and anything else as the value. A value still sealed
/// (read without its key store) is refused rather than guessed at.
impl<'de, T: DeserializeOwned> Deserialize<'de> for Pii<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if is_erased_json(&value) {
            return Ok(Pii::Erased);
        }
        if value
            .as_object()
            .is_some_and(|o| o.contains_key(SEALED_MARKER))
        {
            return Err(D::Error::custom(
                "sealed personal data: read it through a store or runtime that has the key store",
            ));
        }
        // serde_json's message may quote the value; keep only its class.
        T::deserialize(value).map(Pii::Present).map_err(|err| {
            D::Error::custom(match err.classify() {
                serde_json::error::Category::Data => "invalid type or value",
                _ => "malformed value",
            })
        })
    }
}

/// The schema of the value itself: what a reader gets while it is present.
impl<T: JsonSchema> JsonSchema for Pii<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T>()
    }
}

/// A field type that can tell an erased value from a real one: what every `#[event(pii)]`
/// field needs unless the attribute declares a replacement with `pii(erased = ...)`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot represent an erased value",
    label = "a #[event(pii)] field must say when its data was erased",
    note = "use `Pii<{Self}>` (or `Option<Pii<..>>`), or declare the value readers get after \
            erasure: #[event(pii(erased = ...))]"
)]
pub trait Erasable {
    /// What the field holds once its owner is erased.
    fn erased_json() -> Value;
}

impl<T> Erasable for Pii<T> {
    fn erased_json() -> Value {
        erased_json()
    }
}

/// `None` stays `None`; a value that was there becomes `Some(Erased)`.
impl<T> Erasable for Option<Pii<T>> {
    fn erased_json() -> Value {
        erased_json()
    }
}

/// What the owner of a `#[event(pii)]` field may be: one person, or possibly nobody.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot own personal data",
    label = "a pii owner must hold one data-subject id",
    note = "each #[event(pii)] value is sealed with one person's key: the owner field must be a \
            Uuid, an EntityId newtype, or an Option of one"
)]
pub trait PiiOwner {}

impl<T: crate::EntityId> PiiOwner for T {}
impl<T: crate::EntityId> PiiOwner for Option<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_and_erased_round_trip_and_never_print_the_value() {
        let present = Pii::Present("Ada".to_owned());
        assert!(serde_json::to_value(&present).is_err());
        let json = super::super::reveal(|| serde_json::to_value(&present)).unwrap();
        assert_eq!(json, json!("Ada"));
        assert_eq!(
            serde_json::from_value::<Pii<String>>(json).unwrap(),
            present
        );
        let erased = serde_json::to_value(Pii::<String>::Erased).unwrap();
        assert_eq!(erased, erased_json());
        assert!(
            serde_json::from_value::<Pii<String>>(erased)
                .unwrap()
                .is_erased()
        );
        assert_eq!(format!("{present:?}"), "<pii>");
    }

    #[test]
    fn a_sealed_or_mistyped_value_is_refused_without_quoting_it() {
        let sealed = json!({ "$pii": { "v": 1 } });
        let err = serde_json::from_value::<Pii<String>>(sealed).unwrap_err();
        assert!(err.to_string().contains("sealed personal data"), "{err}");
        let err = serde_json::from_value::<Pii<u32>>(json!("Ada")).unwrap_err();
        assert!(!err.to_string().contains("Ada"), "{err}");
    }
}
