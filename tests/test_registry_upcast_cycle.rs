//! A binary whose upcast chains loop: decoding a type in a loop must fail with a typed error,
//! promptly, and `validate()` must name the loop. Kept in its own test binary so no other test
//! shares this broken registry.

use std::sync::mpsc;
use std::time::Duration;

use edupulse_events::{AnyEvent, DecodeError, Registry, RegistryProblem, Uuid};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Two events at the same version, each upcasting from the other.
#[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
#[event(name = "cycle.left", version = 2, upcast_from = CycleRight)]
struct CycleLeft {
    #[event(aggregate_id)]
    id: Uuid,
}

#[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
#[event(name = "cycle.right", version = 2, upcast_from = CycleLeft)]
struct CycleRight {
    #[event(aggregate_id)]
    id: Uuid,
}

impl From<CycleLeft> for CycleRight {
    fn from(left: CycleLeft) -> Self {
        CycleRight { id: left.id }
    }
}

impl From<CycleRight> for CycleLeft {
    fn from(right: CycleRight) -> Self {
        CycleLeft { id: right.id }
    }
}

/// An event upcasting from itself through an alias the derive cannot see through.
type SameEvent = LoopBack;

#[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
#[event(name = "cycle.loop_back", version = 2, upcast_from = SameEvent)]
struct LoopBack {
    #[event(aggregate_id)]
    id: Uuid,
}

/// Decodes on another thread, so a chain that never ends fails the test instead of hanging it.
fn decode_within_seconds(name: &'static str, version: u32) -> Result<AnyEvent, DecodeError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let payload = json!({ "id": Uuid::nil() });
        let _ = tx.send(Registry::global().decode(name, version, &payload));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| {
            panic!("decoding {name}.v{version} did not return: its upcast chain loops")
        })
}

#[test]
fn decoding_a_type_in_an_upcast_cycle_fails_instead_of_looping() {
    for name in ["cycle.left", "cycle.right"] {
        let err = decode_within_seconds(name, 2).unwrap_err();
        assert!(
            matches!(err, DecodeError::UpcastCycle { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("validate()"), "{err}");
    }
}

#[test]
fn decoding_a_type_that_upcasts_from_itself_fails_instead_of_looping() {
    let err = decode_within_seconds("cycle.loop_back", 2).unwrap_err();
    let DecodeError::UpcastCycle { type_name, .. } = &err else {
        panic!("expected UpcastCycle, got {err}");
    };
    assert_eq!(*type_name, "cycle.loop_back.v2");
}

#[test]
fn validate_reports_every_type_in_an_upcast_cycle() {
    let err = Registry::global().validate().unwrap_err();
    let mut looping: Vec<&str> = err
        .problems
        .iter()
        .filter_map(|p| match p {
            RegistryProblem::UpcastCycle { type_name, .. } => Some(*type_name),
            _ => None,
        })
        .collect();
    looping.sort_unstable();
    assert_eq!(
        looping,
        ["cycle.left.v2", "cycle.loop_back.v2", "cycle.right.v2"],
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("test_registry_upcast_cycle::LoopBack"),
        "{message}"
    );
}
