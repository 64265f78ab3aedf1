//! Read models and configuration of the EduPulse examples, shared by `examples/` and
//! `src/bin/` (and the tests that run those binaries as processes).

pub mod config;
pub mod leaderboard;
