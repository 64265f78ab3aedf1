use edupulse_events::{DomainEvent, Uuid, aggregate_events};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.published", aggregate = "quiz")]
pub struct QuizPublished {
    #[event(aggregate_id)]
    pub quiz_id: Uuid,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "badge.awarded", aggregate = "badge")]
pub struct BadgeAwarded {
    #[event(aggregate_id)]
    pub award_id: Uuid,
}

aggregate_events! {
    pub enum QuizEvent for "quiz" by Uuid { QuizPublished, BadgeAwarded }
}

fn main() {}
