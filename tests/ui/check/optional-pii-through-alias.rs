use edupulse_events::privacy::Pii;
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

type Comment = Option<Pii<String>>;

#[derive(Serialize, Deserialize, DomainEvent)]
struct PulseResponded {
    #[event(aggregate_id)]
    pulse_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    comment: Comment,
}

fn main() {}
