use edupulse_events::privacy::Pii;
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

// A value is sealed with one person's key: a list of people cannot own it.
#[derive(Serialize, Deserialize, DomainEvent)]
struct GroupFormed {
    #[event(aggregate_id)]
    group_id: Uuid,
    #[event(data_subject)]
    member_ids: Vec<Uuid>,
    #[event(pii(owner = member_ids))]
    group_name: Pii<String>,
}

fn main() {}
