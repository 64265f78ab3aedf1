use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    choice: String,
}

#[derive(Serialize, Deserialize, DomainEvent)]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    answer: Answer,
}

fn main() {}
