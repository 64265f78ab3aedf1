//! Compile-fail cases: every misuse of `#[derive(DomainEvent)]` must fail with an error at the
//! token the user has to change. Each `.stderr` was generated with `TRYBUILD=overwrite` and
//! reviewed; rustc's wording drifts between toolchains, so regenerate and re-read on upgrade.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
