use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum QuizEvent {
    Submitted { quiz_id: Uuid },
}

fn main() {}
