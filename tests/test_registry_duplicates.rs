//! A binary in which two Rust types claim the same type string: `validate()` must refuse it
//! and name both. Kept in its own test binary so no other test shares this broken registry.

use edupulse_events::{Registry, RegistryProblem, Uuid};
use serde::{Deserialize, Serialize};

mod team_a {
    use super::*;

    #[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
    #[event(name = "badge.revoked")]
    pub struct BadgeRevoked {
        #[event(aggregate_id)]
        pub award_id: Uuid,
    }
}

mod team_b {
    use super::*;

    #[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
    #[event(name = "badge.revoked", subject = "badges.revoked")]
    pub struct BadgeRevoked {
        #[event(aggregate_id)]
        pub badge_id: Uuid,
        pub reason: String,
    }
}

#[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
#[event(name = "badge.expired", subject = "badges.revoked")]
struct BadgeExpired {
    #[event(aggregate_id)]
    award_id: Uuid,
}

#[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
#[event(name = "course.closed", version = 3)]
struct CourseClosedV3 {
    #[event(aggregate_id)]
    course_id: Uuid,
}

#[derive(Serialize, Deserialize, edupulse_events::DomainEvent)]
#[event(name = "course.closed", version = 1)]
struct CourseClosedV1 {
    #[event(aggregate_id)]
    course_id: Uuid,
}

#[test]
fn duplicate_type_strings_fail_validation_naming_both_types() {
    let err = Registry::global().validate().unwrap_err();
    let duplicate = err
        .problems
        .iter()
        .find_map(|p| match p {
            RegistryProblem::DuplicateType {
                type_name,
                rust_types,
            } => Some((*type_name, *rust_types)),
            _ => None,
        })
        .expect("a DuplicateType problem");
    assert_eq!(duplicate.0, "badge.revoked.v1");
    let mut types = duplicate.1.to_vec();
    types.sort();
    assert_eq!(
        types,
        [
            "test_registry_duplicates::team_a::BadgeRevoked",
            "test_registry_duplicates::team_b::BadgeRevoked"
        ]
    );
    let message = err.to_string();
    assert!(message.contains("team_a::BadgeRevoked") && message.contains("team_b::BadgeRevoked"));
}

#[test]
fn duplicate_subjects_fail_validation_naming_both_types() {
    let err = Registry::global().validate().unwrap_err();
    assert!(
        err.problems.iter().any(|p| matches!(
            p,
            RegistryProblem::DuplicateSubject { subject: "badges.revoked", rust_types }
                if rust_types.iter().any(|t| t.ends_with("BadgeExpired"))
        )),
        "{err}"
    );
}

#[test]
fn version_gaps_and_missing_upcasts_are_reported() {
    let err = Registry::global().validate().unwrap_err();
    assert!(err.problems.contains(&RegistryProblem::VersionGap {
        name: "course.closed",
        missing: 2
    }));
    // v3 neither upcasts from anything nor is the lowest version: v1 events cannot reach it.
    assert!(
        err.problems.iter().any(|p| matches!(
            p,
            RegistryProblem::BrokenUpcast {
                type_name: "course.closed.v3",
                ..
            }
        )),
        "{err}"
    );
}

#[test]
fn a_registry_of_a_consistent_subset_is_valid() {
    let subset = Registry::from_descriptors([
        <CourseClosedV1 as edupulse_events::DomainEvent>::descriptor(),
        <BadgeExpired as edupulse_events::DomainEvent>::descriptor(),
    ]);
    subset.validate().unwrap();
}
