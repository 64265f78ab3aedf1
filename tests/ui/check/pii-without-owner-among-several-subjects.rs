use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct BadgeAwarded {
    #[event(aggregate_id)]
    award_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[event(data_subject)]
    teacher_id: Uuid,
    #[event(pii)]
    teacher_note: String,
}

fn main() {}
