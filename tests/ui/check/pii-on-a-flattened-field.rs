use edupulse_events::privacy::Pii;
use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Contact {
    email: String,
    phone: String,
}

#[derive(Serialize, Deserialize, DomainEvent)]
struct GuardianRegistered {
    #[event(aggregate_id)]
    guardian_id: Uuid,
    #[event(data_subject)]
    person_id: Uuid,
    #[event(pii)]
    #[serde(flatten)]
    contact: Pii<Contact>,
}

fn main() {}
