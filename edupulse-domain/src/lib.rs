//! The EduPulse Live domain events, written exactly as an application team writes them: the
//! crate depends on `edupulse-events` and `serde` alone, and compiles under
//! `#![deny(warnings, missing_docs)]`, which proves the derive's output is warning-free and
//! needs nothing else in a user's crate. Examples and tests reuse these types.

#![deny(warnings, missing_docs)]

use edupulse_events::chrono::{DateTime, Utc};
use edupulse_events::privacy::Pii;
use edupulse_events::schemars::JsonSchema;
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

mod quiz;

pub use quiz::{Quiz, QuizClosed, QuizError, QuizEvent, QuizPublished};

/// A teacher published a lesson.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "lesson.published", aggregate = "lesson")]
pub struct LessonPublished {
    /// The lesson.
    #[event(aggregate_id)]
    pub lesson_id: Uuid,
    /// The course it belongs to.
    pub course_id: Uuid,
    /// The teacher who published it.
    #[event(data_subject)]
    pub teacher_id: Uuid,
    /// The teacher's display name, shown to students.
    #[event(pii)]
    pub teacher_name: Pii<String>,
    /// The lesson's title.
    pub title: String,
    /// When students can see it.
    pub published_at: DateTime<Utc>,
}

/// A student submitted a quiz: the first schema, which stored raw counts.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.submitted", version = 1, aggregate = "quiz")]
pub struct QuizSubmittedV1 {
    /// The quiz.
    #[event(aggregate_id)]
    pub quiz_id: Uuid,
    /// The student who submitted it.
    #[event(data_subject)]
    pub student_id: Uuid,
    /// The student's name as typed on the quiz.
    #[event(pii)]
    pub student_name: Pii<String>,
    /// Questions answered correctly.
    pub correct: u32,
    /// Questions in the quiz.
    pub total: u32,
}

/// A student submitted a quiz: v2 stores a normalised score and the answers given.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.submitted", version = 2, aggregate = "quiz", upcast_from = QuizSubmittedV1)]
pub struct QuizSubmitted {
    /// The quiz.
    #[event(aggregate_id)]
    pub quiz_id: Uuid,
    /// The student who submitted it.
    #[event(data_subject)]
    pub student_id: Uuid,
    /// The student's name as typed on the quiz.
    #[event(pii)]
    pub student_name: Pii<String>,
    /// Share of correct answers, from 0.0 to 1.0.
    pub score: f32,
    /// The answers, in question order; empty for submissions recorded by v1.
    #[serde(default)]
    pub answers: Vec<Answer>,
}

/// One answer on a quiz. A payload type of its own: it opts into the catalog's JSON Schema
/// through the runtime's re-export of schemars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "edupulse_events::schemars")]
pub struct Answer {
    /// The question's number, from 1.
    pub question: u32,
    /// The option the student chose.
    pub choice: String,
    /// Whether it was right.
    pub correct: bool,
}

impl From<QuizSubmittedV1> for QuizSubmitted {
    fn from(v1: QuizSubmittedV1) -> Self {
        let score = if v1.total == 0 {
            0.0
        } else {
            v1.correct as f32 / v1.total as f32
        };
        QuizSubmitted {
            quiz_id: v1.quiz_id,
            student_id: v1.student_id,
            student_name: v1.student_name,
            score,
            answers: Vec::new(),
        }
    }
}

/// A teacher awarded a badge to a student. Two people are involved, so each PII field names
/// its owner.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "badge.awarded", aggregate = "badge")]
pub struct BadgeAwarded {
    /// This award.
    #[event(aggregate_id)]
    pub award_id: Uuid,
    /// The student who earned it.
    #[event(data_subject)]
    pub student_id: Uuid,
    /// The teacher who awarded it.
    #[event(data_subject)]
    pub teacher_id: Uuid,
    /// The student's name as printed on the badge.
    #[event(pii(owner = student_id))]
    pub student_name: Pii<String>,
    /// The teacher's personal note to the student.
    #[event(pii(owner = teacher_id))]
    pub teacher_note: Pii<String>,
    /// Which badge, e.g. `quiz-streak-5`.
    pub badge: String,
}

/// How a payment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "edupulse_events::schemars")]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The money was taken.
    Captured,
    /// The card issuer refused.
    Declined,
    /// Taken, then returned.
    Refunded,
}

/// A guardian's payment for a course was processed.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "payment.processed", aggregate = "payment")]
#[serde(rename_all = "camelCase")]
pub struct PaymentProcessed {
    /// The payment.
    #[event(aggregate_id)]
    pub payment_id: Uuid,
    /// Who paid.
    #[event(data_subject)]
    pub payer_id: Uuid,
    /// The name on the card.
    #[event(pii)]
    pub cardholder_name: Pii<String>,
    /// Where the receipt goes.
    #[event(pii)]
    pub billing_email: Pii<String>,
    /// The amount in minor units.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The outcome.
    pub status: PaymentStatus,
}

/// A teacher opened a learning pulse: a one-question check of how the class is doing.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "learning_pulse.created", aggregate = "learning_pulse")]
pub struct LearningPulseCreated {
    /// The pulse.
    #[event(aggregate_id)]
    pub pulse_id: Uuid,
    /// The lesson it checks.
    pub lesson_id: Uuid,
    /// The teacher who asked.
    #[event(data_subject)]
    pub teacher_id: Uuid,
    /// The question.
    pub question: String,
    /// The answers students can pick.
    pub options: Vec<String>,
}

/// A student answered a learning pulse.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "learning_pulse.responded", aggregate = "learning_pulse")]
pub struct LearningPulseResponded {
    /// The pulse.
    #[event(aggregate_id)]
    pub pulse_id: Uuid,
    /// The student who answered.
    #[event(data_subject)]
    pub student_id: Uuid,
    /// Index into the pulse's options.
    pub choice: u32,
    /// Anything the student wrote besides: personal by nature.
    #[event(pii)]
    pub comment: Option<Pii<String>>,
}

/// A user asked to be forgotten. The user is both the aggregate and the data subject; the
/// event itself holds no personal data, so it survives the erasure it asks for.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "user.erase_requested", aggregate = "user")]
pub struct UserEraseRequested {
    /// The user to forget.
    #[event(aggregate_id)]
    #[event(data_subject)]
    pub user_id: Uuid,
    /// Who filed the request (the user, a guardian, or support staff).
    pub requested_by: Uuid,
    /// When it was filed.
    pub requested_at: DateTime<Utc>,
}
