use edupulse_events::DomainEvent;

#[derive(DomainEvent)]
union QuizScore {
    points: u32,
    ratio: f32,
}

fn main() {}
