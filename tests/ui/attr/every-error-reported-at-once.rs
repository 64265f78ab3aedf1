use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(version = 0, subject = "quiz.*")]
struct QuizSubmitted {
    #[event(aggregate_idd)]
    quiz_id: Uuid,
    #[event(pii)]
    student_name: String,
}

fn main() {}
