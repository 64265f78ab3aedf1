//! The domain's event contracts: every event version this crate (and the runtime it links)
//! publishes matches its committed snapshot in `contracts/`, and every snapshotted version's
//! example still decodes into today's types. A new event or version:
//! `EDUPULSE_CONTRACTS=write cargo test -p edupulse-domain`, then commit the new file.

use edupulse_events::contract::Contracts;

#[test]
fn every_event_version_matches_its_snapshot() {
    // Linking the crate's types: the registry holds what the binary links.
    let _ = <edupulse_domain::QuizSubmitted as edupulse_events::DomainEvent>::NAME;
    let check = Contracts::new(concat!(env!("CARGO_MANIFEST_DIR"), "/contracts")).assert();
    assert!(check.checked >= 8, "{check:?}");
}
