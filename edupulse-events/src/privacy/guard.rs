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

pub(super) use super::form::PLAINTEXT_MARKER as MARKER;

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
    /// Values marked in the current marking scope: every one must be found again at a known
    /// field, or it went somewhere the envelope cannot see (inside a string a custom
    /// serializer wrote, say).
    static MARKED: Cell<usize> = const { Cell::new(0) };
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
///
/// Inside an event's own serialization (`Envelope::new`) this changes nothing: a custom
/// serializer cannot reveal what the envelope is about to seal.
pub fn reveal<R>(f: impl FnOnce() -> R) -> R {
    let mode = match mode() {
        Mode::Mark => Mode::Mark,
        _ => Mode::Reveal,
    };
    with_mode(mode, f)
}

/// Runs `f` (an event's serialization) with present values marked for [`unwrap_marked`];
/// also returns how many were marked.
pub(crate) fn marking<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = MARKED.with(|m| m.replace(0));
    let result = with_mode(Mode::Mark, f);
    let marked = MARKED.with(|m| m.replace(before));
    (result, marked)
}

/// Counts one value marked (called by `Pii`'s `Serialize`).
pub(super) fn count_marked() {
    MARKED.with(|m| m.set(m.get() + 1));
}

/// Unwraps the marked value at each of `known` top-level fields of `payload`; `marked` values
/// were marked in all. A marker left anywhere else is an error with its path, as `a.b[2].c`,
/// each object key not among `names` (the payload schema's property names; a map's keys may
/// be personal data) shown as `<key>`. Fewer markers found than were marked is an error too:
/// a value went where no marker can be seen.
pub(crate) fn unwrap_marked(
    payload: &mut Value,
    known: &[&str],
    marked: usize,
    names: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let mut unwrapped = 0;
    if let Value::Object(fields) = payload {
        for name in known {
            if let Some(slot) = fields.get_mut(*name)
                && let Some(inner) = take_marked(slot)
            {
                *slot = inner;
                unwrapped += 1;
            }
        }
    }
    // Each marked value leaves one marker: when all were found at known fields, none is left
    // anywhere, and the payload need not be walked (this runs on every append).
    if unwrapped == marked {
        return Ok(());
    }
    let mut path = Vec::new();
    if find_marker(payload, &mut path) {
        return Err(show(&path, names));
    }
    if unwrapped != marked {
        return Err("(a value written by custom serialization, e.g. inside a string)".to_owned());
    }
    Ok(())
}

/// The value inside a marker object, leaving `Null` in its place; `None` when `slot` is not one.
fn take_marked(slot: &mut Value) -> Option<Value> {
    let object = slot.as_object_mut().filter(|o| o.len() == 1)?;
    object.remove(MARKER)
}

/// One step of a path into a payload.
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// Whether a marker object is somewhere in `value`; `path` is left pointing at it.
fn find_marker<'v>(value: &'v Value, path: &mut Vec<Step<'v>>) -> bool {
    match value {
        Value::Object(object) => {
            if object.len() == 1 && object.contains_key(MARKER) {
                return true;
            }
            object.iter().any(|(name, inner)| {
                path.push(Step::Key(name));
                find_marker(inner, path) || {
                    path.pop();
                    false
                }
            })
        }
        Value::Array(items) => items.iter().enumerate().any(|(index, inner)| {
            path.push(Step::Index(index));
            find_marker(inner, path) || {
                path.pop();
                false
            }
        }),
        _ => false,
    }
}

/// `path` as `a.b[2].c`, each key not among `names` shown as `<key>`.
fn show(path: &[Step<'_>], names: &dyn Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(name) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(if names(name) { name } else { "<key>" });
            }
            Step::Index(index) => {
                use std::fmt::Write as _;
                write!(text, "[{index}]").expect("writing to a String");
            }
        }
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_at_known_fields_are_unwrapped_and_others_are_named() {
        let all = |_: &str| true;
        let mut payload = json!({ "name": { MARKER: "Ada" }, "score": 1 });
        unwrap_marked(&mut payload, &["name"], 1, &all).unwrap();
        assert_eq!(payload, json!({ "name": "Ada", "score": 1 }));

        let mut nested = json!({ "details": { "names": [1, { MARKER: "Ada" }] } });
        let path = unwrap_marked(&mut nested, &["details"], 1, &all).unwrap_err();
        assert_eq!(path, "details.names[1]");

        let mut inside = json!({ "name": { MARKER: { "alias": { MARKER: "Ada" } } } });
        let path = unwrap_marked(&mut inside, &["name"], 2, &all).unwrap_err();
        assert_eq!(path, "name.alias");

        // A map keyed by personal data: the key is not shown.
        let fields = |name: &str| name == "grades";
        let mut keyed = json!({ "grades": { "ada@example.org": { MARKER: "A" } } });
        let path = unwrap_marked(&mut keyed, &[], 1, &fields).unwrap_err();
        assert_eq!(path, "grades.<key>");

        // Marked, but the marker is nowhere to be seen (written inside a string).
        let mut hidden = json!({ "contact": "{\"email\":{\"$pii:plaintext\":\"x\"}}" });
        assert!(unwrap_marked(&mut hidden, &[], 1, &all).is_err());
    }

    #[test]
    fn a_scope_is_restored_after_a_panic() {
        let caught = std::panic::catch_unwind(|| reveal(|| panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(mode(), Mode::Refuse);
        // Inside an envelope's marking, reveal cannot switch marking off.
        assert_eq!(marking(|| reveal(mode)).0, Mode::Mark);
        assert_eq!(reveal(mode), Mode::Reveal);
    }
}
