use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct Submitted<T> {
    #[event(aggregate_id)]
    quiz_id: Uuid,
    detail: T,
}

fn main() {}
