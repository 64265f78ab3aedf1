use edupulse_events::{DomainEvent, EntityId, Uuid, aggregate_events};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, edupulse_events::schemars::JsonSchema)]
#[schemars(crate = "edupulse_events::schemars")]
pub struct QuizId(Uuid);

impl EntityId for QuizId {
    fn entity_uuid(&self) -> Uuid {
        self.0
    }
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.published", aggregate = "quiz")]
pub struct QuizPublished {
    #[event(aggregate_id)]
    pub quiz_id: QuizId,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "quiz.closed", aggregate = "quiz")]
pub struct QuizClosed {
    #[event(aggregate_id)]
    pub quiz_id: Uuid,
}

aggregate_events! {
    pub enum QuizEvent for "quiz" by QuizId { QuizPublished, QuizClosed }
}

fn main() {}
