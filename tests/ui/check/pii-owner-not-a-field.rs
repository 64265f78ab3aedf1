use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct BadgeAwarded {
    #[event(aggregate_id)]
    award_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[event(pii(owner = studnet_id))]
    student_name: String,
}

fn main() {}
