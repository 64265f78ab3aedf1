use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(version = 2, version = 3)]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
}

fn main() {}
