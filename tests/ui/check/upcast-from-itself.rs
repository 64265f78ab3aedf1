use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.graded", version = 2, upcast_from = QuizGraded)]
struct QuizGraded {
    #[event(aggregate_id)]
    quiz_id: Uuid,
}

fn main() {}
