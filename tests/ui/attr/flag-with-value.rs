use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct QuizSubmitted {
    #[event(aggregate_id = true)]
    quiz_id: Uuid,
}

fn main() {}
