use edupulse_events::{DomainEvent, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct LessonPublished {
    lesson_id: Uuid,
    title: String,
}

fn main() {}
