use edupulse_events::privacy::Pii as Personal;
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    student_name: Personal<String>,
}

fn main() {}
