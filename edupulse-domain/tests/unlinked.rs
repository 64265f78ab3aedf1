//! The linking trap, as a user meets it: an integration test that names nothing of its
//! events crate does not link it, so none of the crate's types are registered. The contract
//! check must fail here, naming the crate and the line that fixes it, rather than pass while
//! checking nothing. (This file deliberately never names `edupulse_domain`.)

use edupulse_events::Registry;
use edupulse_events::contract::ContractViolation;

#[test]
fn a_test_that_does_not_link_its_events_crate_fails_and_names_the_fix() {
    assert!(
        !Registry::global().crates().contains(&"edupulse_domain"),
        "this test must not link the domain crate"
    );
    let violations = edupulse_events::contracts!()
        .check()
        .expect_err("nothing of the crate is linked: the check must fail")
        .0;
    assert!(
        violations.iter().any(|v| matches!(
            v,
            ContractViolation::NotLinked { crate_name, .. } if crate_name == "edupulse_domain"
        )),
        "{violations:?}"
    );
    let report = edupulse_events::contract::ContractViolations(violations).to_string();
    assert!(report.contains("use edupulse_domain as _;"), "{report}");
    // The snapshots of the unlinked types are named too, with the same cause.
    assert!(report.contains("quiz.submitted.v2"), "{report}");
    assert!(report.contains("add `use that_crate as _;`"), "{report}");
}
