use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct UserEraseRequested {
    #[event(aggregate_id)]
    #[event(data_subject)]
    #[event(pii)]
    user_id: Uuid,
}

fn main() {}
