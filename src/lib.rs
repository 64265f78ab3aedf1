//! Read models and configuration of the EduPulse examples, shared by `examples/` and
//! `src/bin/` (and the tests that run those binaries as processes).

pub mod config;
pub mod leaderboard;

/// The README's Rust blocks, compiled (and run, unless marked otherwise) as doctests, so the
/// README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
