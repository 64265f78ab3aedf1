//! The event types the domain crate commits contracts for: what a catalog of this workspace's
//! binaries must list, no more and no fewer.

use std::collections::BTreeSet;

/// The type strings (`quiz.submitted.v2`) of `edupulse-domain/contracts/*.json`.
pub fn contract_types() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/edupulse-domain/contracts");
    std::fs::read_dir(dir)
        .expect("the domain's contracts")
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")
                .expect("a JSON contract")
                .to_owned()
        })
        .collect()
}
