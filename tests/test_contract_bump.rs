//! The contract check after a version bump done right: version 1 kept as it was published
//! (its snapshot is committed in `tests/contracts/`), version 2 added with an upcast. The
//! check asks for version 2's snapshot, writes it without touching version 1's, then passes,
//! version 1's golden example decoding through the upcast. `test_contract_drift.rs` is the
//! same event with version 1 edited in place instead.

use std::path::Path;

use edupulse_events::contract::{ContractViolation, Contracts};
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

/// Version 1, exactly as it was snapshotted: a score in whole points.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "contract_demo.quiz_graded", version = 1, aggregate = "quiz")]
struct QuizGradedV1 {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    score: u32,
}

/// Version 2: the score became a fraction of the maximum.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(
    name = "contract_demo.quiz_graded",
    version = 2,
    aggregate = "quiz",
    upcast_from = QuizGradedV1
)]
struct QuizGraded {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    score: f32,
}

impl From<QuizGradedV1> for QuizGraded {
    fn from(v1: QuizGradedV1) -> Self {
        QuizGraded {
            quiz_id: v1.quiz_id,
            score: v1.score as f32 / 100.0,
        }
    }
}

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contracts");

/// A scratch copy of the committed snapshots.
fn scratch_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(COMMITTED).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn bumping_the_version_with_an_upcast_passes_once_the_new_version_is_snapshotted() {
    let dir = scratch_copy();
    let v1_file = dir.path().join("contract_demo.quiz_graded.v1.json");
    let v1_before = std::fs::read(&v1_file).unwrap();
    let contracts = Contracts::new(dir.path()).only("contract_demo.");

    let missing = contracts.check().unwrap_err();
    assert_eq!(
        missing.0,
        vec![ContractViolation::Unsnapshotted {
            type_name: QuizGraded::TYPE.into(),
            dir: dir.path().to_path_buf(),
        }],
        "only the new version lacks a snapshot"
    );

    let written = contracts.write_new().unwrap();
    assert_eq!(written.written, vec![QuizGraded::TYPE.to_owned()]);
    assert_eq!(written.checked, 2);
    assert_eq!(std::fs::read(&v1_file).unwrap(), v1_before);

    let check = contracts.check().unwrap();
    assert_eq!(check.checked, 2);
    assert!(check.written.is_empty());
    assert!(Path::new(&dir.path().join("contract_demo.quiz_graded.v2.json")).exists());
}

#[test]
fn a_snapshot_whose_type_is_gone_is_reported() {
    let dir = scratch_copy();
    let v1 = std::fs::read_to_string(dir.path().join("contract_demo.quiz_graded.v1.json")).unwrap();
    std::fs::write(
        dir.path().join("contract_demo.quiz_regraded.v1.json"),
        v1.replace(
            "contract_demo.quiz_graded.v1",
            "contract_demo.quiz_regraded.v1",
        ),
    )
    .unwrap();
    let found = Contracts::new(dir.path())
        .only("contract_demo.")
        .write_new()
        .unwrap_err();
    assert!(
        found.0.iter().any(|v| matches!(
            v,
            ContractViolation::Unregistered { type_name, .. } if type_name == "contract_demo.quiz_regraded.v1"
        )),
        "{found}"
    );
}

#[test]
fn an_example_that_no_longer_decodes_is_reported() {
    let dir = scratch_copy();
    let file = dir.path().join("contract_demo.quiz_graded.v1.json");
    let v1 = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, v1.replace("\"score\": 0", "\"score\": \"ten\"")).unwrap();
    let found = Contracts::new(dir.path())
        .only("contract_demo.")
        .write_new()
        .unwrap_err();
    assert!(
        matches!(
            found.0.as_slice(),
            [ContractViolation::ExampleDoesNotDecode { type_name, .. }] if type_name == QuizGradedV1::TYPE
        ),
        "{found}"
    );
}
