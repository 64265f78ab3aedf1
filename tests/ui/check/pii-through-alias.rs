use edupulse_events::privacy::Pii;
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

type StudentName = Pii<String>;

#[derive(Serialize, Deserialize, DomainEvent)]
struct QuizSubmitted {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    student_name: StudentName,
}

fn main() {}
