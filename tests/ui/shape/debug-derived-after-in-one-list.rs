use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent, Debug)]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
}

fn main() {}
