use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(nmae = "quiz.submitted")]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
}

fn main() {}
