//! The contract check catching drift: `contract_demo.quiz_graded` version 1 was snapshotted
//! (`tests/contracts/`) with a score in whole points, and here it was edited in place to a
//! fraction without a version bump. `test_contract_bump.rs` does the same change properly.

use edupulse_events::contract::{ContractViolation, Contracts};
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

/// Version 1 after an edit in place: `score` was `u32`.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "contract_demo.quiz_graded", version = 1, aggregate = "quiz")]
struct QuizGraded {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    score: f32,
}

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contracts");

#[test]
fn changing_a_field_of_a_snapshotted_version_fails_naming_type_version_and_field() {
    let found = Contracts::new(COMMITTED)
        .only("contract_demo.")
        .check()
        .unwrap_err();
    let [
        ContractViolation::Changed {
            type_name,
            version,
            changes,
            ..
        },
    ] = found.0.as_slice()
    else {
        panic!("one change expected: {found}");
    };
    assert_eq!(type_name, QuizGraded::TYPE);
    assert_eq!(*version, 1);
    assert_eq!(
        changes,
        &vec!["field `score` changed from integer (uint32) to number (float)".to_owned()]
    );
    let message = found.to_string();
    for expected in [
        "`contract_demo.quiz_graded.v1` (version 1 of `contract_demo.quiz_graded`)",
        "field `score`",
        "add version 2",
        "version = 2, upcast_from = QuizGraded",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing from: {message}"
        );
    }
}

#[test]
fn writing_new_snapshots_never_rewrites_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contract_demo.quiz_graded.v1.json");
    std::fs::copy(
        format!("{COMMITTED}/contract_demo.quiz_graded.v1.json"),
        &file,
    )
    .unwrap();
    let before = std::fs::read(&file).unwrap();
    let found = Contracts::new(dir.path())
        .only("contract_demo.")
        .write_new()
        .unwrap_err();
    assert!(
        matches!(found.0.as_slice(), [ContractViolation::Changed { .. }]),
        "{found}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
}
