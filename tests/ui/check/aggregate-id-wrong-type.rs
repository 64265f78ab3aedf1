use edupulse_events::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct LessonPublished {
    #[event(aggregate_id)]
    lesson_id: String,
    title: String,
}

fn main() {}
