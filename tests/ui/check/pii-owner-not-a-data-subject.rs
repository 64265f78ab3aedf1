use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct BadgeAwarded {
    #[event(aggregate_id)]
    award_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    teacher_id: Uuid,
    #[event(pii(owner = teacher_id))]
    teacher_note: String,
}

fn main() {}
