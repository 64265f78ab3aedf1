//! The quiz aggregate: a teacher publishes a quiz, students submit answers (each at most the
//! quiz's number of attempts), the teacher closes it. Two submissions racing for a student's
//! last attempt are the conflict the version check decides: one is appended, the other is
//! decided again on the state that includes the first, and refused.

use std::collections::HashMap;
use std::fmt;

use edupulse_events::aggregate::Aggregate;
use edupulse_events::privacy::Pii;
use edupulse_events::{DomainEvent, Uuid, aggregate_events};
use serde::{Deserialize, Serialize};

use crate::{Answer, QuizSubmitted};

/// A teacher published a quiz: students may submit from now on.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.published", aggregate = "quiz")]
pub struct QuizPublished {
    /// The quiz.
    #[event(aggregate_id)]
    pub quiz_id: Uuid,
    /// The lesson it tests.
    pub lesson_id: Uuid,
    /// The teacher who published it.
    #[event(data_subject)]
    pub teacher_id: Uuid,
    /// How many times one student may submit it.
    pub max_attempts: u32,
}

/// A teacher closed a quiz: no more submissions.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.closed", aggregate = "quiz")]
pub struct QuizClosed {
    /// The quiz.
    #[event(aggregate_id)]
    pub quiz_id: Uuid,
    /// The teacher who closed it.
    #[event(data_subject)]
    pub teacher_id: Uuid,
}

aggregate_events! {
    /// Everything that happens to a quiz.
    pub enum QuizEvent for "quiz" by Uuid { QuizPublished, QuizSubmitted, QuizClosed }
}

/// A quiz as its commands see it. It keeps no personal data (not the students' names): a
/// decision needs only who submitted how often.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Quiz {
    /// Submissions allowed per student; `None` until published.
    max_attempts: Option<u32>,
    /// Whether it was closed.
    closed: bool,
    /// Submissions so far, per student.
    attempts: HashMap<Uuid, u32>,
}

impl Aggregate for Quiz {
    type Event = QuizEvent;

    fn apply(&mut self, event: &QuizEvent) {
        match event {
            QuizEvent::QuizPublished(published) => self.max_attempts = Some(published.max_attempts),
            QuizEvent::QuizSubmitted(submitted) => {
                *self.attempts.entry(submitted.student_id).or_default() += 1;
            }
            QuizEvent::QuizClosed(_) => self.closed = true,
        }
    }
}

/// Why a quiz refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuizError {
    /// It was published already.
    AlreadyPublished,
    /// It is not published (yet).
    NotPublished,
    /// It is closed.
    Closed,
    /// The student used every attempt.
    NoAttemptsLeft {
        /// How many the quiz allows.
        allowed: u32,
    },
    /// A quiz must allow at least one attempt.
    NoAttempts,
}

impl fmt::Display for QuizError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuizError::AlreadyPublished => f.write_str("the quiz is already published"),
            QuizError::NotPublished => f.write_str("the quiz is not published"),
            QuizError::Closed => f.write_str("the quiz is closed"),
            QuizError::NoAttemptsLeft { allowed } => {
                write!(f, "the student used all {allowed} attempt(s)")
            }
            QuizError::NoAttempts => f.write_str("a quiz allows at least one attempt"),
        }
    }
}

impl std::error::Error for QuizError {}

impl Quiz {
    /// Publishes the quiz.
    pub fn publish(
        &self,
        quiz_id: Uuid,
        lesson_id: Uuid,
        teacher_id: Uuid,
        max_attempts: u32,
    ) -> Result<Vec<QuizEvent>, QuizError> {
        if self.max_attempts.is_some() {
            return Err(QuizError::AlreadyPublished);
        }
        if max_attempts == 0 {
            return Err(QuizError::NoAttempts);
        }
        Ok(vec![
            QuizPublished {
                quiz_id,
                lesson_id,
                teacher_id,
                max_attempts,
            }
            .into(),
        ])
    }

    /// Records a student's submission, scored from the answers.
    pub fn submit(
        &self,
        quiz_id: Uuid,
        student_id: Uuid,
        student_name: Pii<String>,
        answers: Vec<Answer>,
    ) -> Result<Vec<QuizEvent>, QuizError> {
        let allowed = self.max_attempts.ok_or(QuizError::NotPublished)?;
        if self.closed {
            return Err(QuizError::Closed);
        }
        if self.attempts_of(student_id) >= allowed {
            return Err(QuizError::NoAttemptsLeft { allowed });
        }
        let correct = answers.iter().filter(|a| a.correct).count();
        let score = if answers.is_empty() {
            0.0
        } else {
            correct as f32 / answers.len() as f32
        };
        Ok(vec![
            QuizSubmitted {
                quiz_id,
                student_id,
                student_name,
                score,
                answers,
            }
            .into(),
        ])
    }

    /// Closes the quiz; closing it again changes nothing.
    pub fn close(&self, quiz_id: Uuid, teacher_id: Uuid) -> Result<Vec<QuizEvent>, QuizError> {
        if self.max_attempts.is_none() {
            return Err(QuizError::NotPublished);
        }
        if self.closed {
            return Ok(Vec::new());
        }
        Ok(vec![
            QuizClosed {
                quiz_id,
                teacher_id,
            }
            .into(),
        ])
    }

    /// How many times `student` submitted.
    pub fn attempts_of(&self, student: Uuid) -> u32 {
        self.attempts.get(&student).copied().unwrap_or(0)
    }
}
