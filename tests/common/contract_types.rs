//! The event types the domain crate commits contracts for: what a catalog of this workspace's
//! binaries must list, no more and no fewer.
// Each test binary uses what it needs of this.
#![allow(dead_code)]

use std::collections::BTreeSet;

/// The type strings a catalog exported as JSON lists.
pub fn listed(catalog: &serde_json::Value) -> BTreeSet<String> {
    catalog["events"]
        .as_array()
        .expect("a catalog's events")
        .iter()
        .map(|e| e["type"].as_str().expect("a type string").to_owned())
        .collect()
}

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
