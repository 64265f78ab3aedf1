use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.submitted", version = 1)]
struct QuizSubmittedV1 {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    correct: u32,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.submitted", version = 2, upcast_from = QuizSubmittedV1)]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    score: f32,
}

fn main() {}
