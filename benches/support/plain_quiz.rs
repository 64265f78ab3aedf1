//! `QuizSubmitted`'s shape without personal data. The store and relay figures measure the log
//! and the outbox, so they use it; what sealing adds is measured on its own, against it
//! (`cargo bench --bench privacy`, part `append`).

use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

/// A quiz submission whose name field is not personal data (a pseudonymous label).
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "bench.quiz_scored", aggregate = "quiz")]
pub struct QuizScored {
    /// The quiz.
    #[event(aggregate_id)]
    pub quiz_id: Uuid,
    /// The student.
    #[event(data_subject)]
    pub student_id: Uuid,
    /// Same length as a student's name, not sealed.
    pub student_label: String,
    /// The score.
    pub score: f32,
    /// No answers, as in the PII variant.
    pub answers: Vec<u32>,
}
