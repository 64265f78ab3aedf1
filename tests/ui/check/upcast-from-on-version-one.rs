use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.graded", version = 1)]
struct QuizGradedDraft {
    #[event(aggregate_id)]
    quiz_id: Uuid,
}

impl From<QuizGradedDraft> for QuizGraded {
    fn from(draft: QuizGradedDraft) -> Self {
        QuizGraded {
            quiz_id: draft.quiz_id,
        }
    }
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.graded", version = 1, upcast_from = QuizGradedDraft)]
struct QuizGraded {
    #[event(aggregate_id)]
    quiz_id: Uuid,
}

fn main() {}
