use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

// After erasure a plain String would have to come back as a fake name or fail to decode.
#[derive(Serialize, Deserialize, DomainEvent)]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[event(pii)]
    student_name: String,
}

fn main() {}
