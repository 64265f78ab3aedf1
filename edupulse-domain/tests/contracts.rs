//! The domain's event contracts: every event version this crate (and the runtime it links)
//! publishes matches its committed snapshot in `contracts/`, and every snapshotted version's
//! example still decodes into today's types. A new event or version:
//! `EDUPULSE_CONTRACTS=write cargo test -p edupulse-domain`, then commit the new file.

// Links the crate's event types into this test binary: without it they are not registered
// and the check fails, naming this line as the fix (see `unlinked.rs`).
use edupulse_domain as _;

#[test]
fn every_event_version_matches_its_snapshot() {
    let check = edupulse_events::contracts!().assert();
    assert!(check.checked >= 8, "{check:?}");
}
