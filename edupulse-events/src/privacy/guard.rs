//! The run-time guard that keeps a [`Pii`](super::Pii) value from ever being written in clear.
//!
//! The derive's checks are syntactic: a `Pii` reached through a type alias, a renamed import,
//! a nested struct or `#[serde(flatten)]` is invisible to them. So `Pii` itself decides how it
//! serializes, from the scope it is serialized in (per thread, since serde is synchronous):
//!
//! - no scope (the default): a present value is an error, never plaintext;
//! - [`Envelope::new`](crate::Envelope::new)'s scope: a present value is written wrapped in a
//!   marker object, and the envelope unwraps the markers at the fields the descriptor knows
//!   as personal data (which the store then seals); a marker anywhere else is a typed error
//!   naming the field path, and nothing is written;
//! - [`reveal`]: the application asked for the plaintext on purpose (an API response, a test).

use std::cell::Cell;

use serde_json::Value;

/// The member of the object a present value is wrapped in while an envelope is made. Never
/// stored: the envelope removes every one before it exists.
pub(super) const MARKER: &str = "$pii:plaintext";

/// How a present `Pii` value serializes on this thread right now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Refuse: there is no place that would seal it.
    Refuse,
    /// Wrap it in the marker, for the envelope to find.
    Mark,
    /// Write it as it is: the caller asked for the plaintext.
    Reveal,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Refuse) };
}

/// The current mode.
pub(crate) fn mode() -> Mode {
    MODE.with(Cell::get)
}

/// Runs `f` with `mode` in force, restoring the previous one afterwards (also on a panic).
fn with_mode<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
    struct Restore(Mode);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MODE.with(|m| m.replace(mode)));
    f()
}

/// Serializes inside `f` write [`Pii`](super::Pii) values as their plaintext, for the
/// application's own use of an event's JSON (an API response, a test's expectation).
///
/// Outside such a scope a present `Pii` value refuses to serialize, so that no event can reach
/// a stored or published form with personal data the store did not seal. JSON made here must
/// not be appended: the store seals only the fields the derive knows.
///
/// ```
/// use edupulse_events::privacy::{Pii, reveal};
///
/// let name: Pii<String> = Pii::from("Ada");
/// assert!(serde_json::to_value(&name).is_err());
/// let json = reveal(|| serde_json::to_value(&name)).unwrap();
/// assert_eq!(json, "Ada");
/// ```
pub fn reveal<R>(f: impl FnOnce() -> R) -> R {
    with_mode(Mode::Reveal, f)
}

/// Runs `f` (an event's serialization) with present values marked for [`unwrap_marked`].
pub(crate) fn marking<R>(f: impl FnOnce() -> R) -> R {
    with_mode(Mode::Mark, f)
}

/// Unwraps the marked value at each of `known` top-level fields of `payload`, then looks for
/// any marker left: the path of the first one is returned as the error, as `a.b[2].c`.
pub(crate) fn unwrap_marked(payload: &mut Value, known: &[&str]) -> Result<(), String> {
    if let Value::Object(fields) = payload {
        for name in known {
            if let Some(slot) = fields.get_mut(*name)
                && let Some(inner) = take_marked(slot)
            {
                *slot = inner;
            }
        }
    }
    let mut path = String::new();
    if find_marker(payload, &mut path) {
        if path.is_empty() {
            path.push('.');
        }
        return Err(path);
    }
    Ok(())
}

/// The value inside a marker object, leaving `Null` in its place; `None` when `slot` is not one.
fn take_marked(slot: &mut Value) -> Option<Value> {
    let object = slot.as_object_mut().filter(|o| o.len() == 1)?;
    object.remove(MARKER)
}

/// Whether a marker object is somewhere in `value`; `path` is left pointing at it.
fn find_marker(value: &Value, path: &mut String) -> bool {
    match value {
        Value::Object(object) => {
            if object.len() == 1 && object.contains_key(MARKER) {
                return true;
            }
            for (name, inner) in object {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(name);
                if find_marker(inner, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                if find_marker(inner, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_at_known_fields_are_unwrapped_and_others_are_named() {
        let mut payload = json!({ "name": { MARKER: "Ada" }, "score": 1 });
        unwrap_marked(&mut payload, &["name"]).unwrap();
        assert_eq!(payload, json!({ "name": "Ada", "score": 1 }));

        let mut nested = json!({ "details": { "names": [1, { MARKER: "Ada" }] } });
        let path = unwrap_marked(&mut nested, &["details"]).unwrap_err();
        assert_eq!(path, "details.names[1]");

        let mut inside = json!({ "name": { MARKER: { "alias": { MARKER: "Ada" } } } });
        let path = unwrap_marked(&mut inside, &["name"]).unwrap_err();
        assert_eq!(path, "name.alias");
    }

    #[test]
    fn a_scope_is_restored_after_a_panic() {
        let caught = std::panic::catch_unwind(|| reveal(|| panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(mode(), Mode::Refuse);
        marking(|| assert_eq!(reveal(mode), Mode::Reveal));
    }
}
