//! PII must never reach a log line, a `Debug` string or an error message. Canary values are
//! planted in every PII field and searched for in everything the runtime prints.

use std::io::Write;
use std::sync::{Arc, Mutex};

use edupulse_domain::{BadgeAwarded, PaymentProcessed, PaymentStatus, QuizSubmitted};
use edupulse_events::privacy::Pii;
use edupulse_events::{DomainEvent, Envelope, Registry, Uuid};
use serde::{Deserialize, Serialize};

/// Every shape a PII field takes: `Pii`, an optional `Pii`, and a plain type with a declared
/// replacement.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_pii_masking.profile_updated", aggregate = "profile")]
struct ProfileUpdated {
    #[event(aggregate_id)]
    profile_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[event(pii)]
    display_name: Pii<String>,
    #[event(pii)]
    bio: Option<Pii<String>>,
    #[event(pii(erased = String::from("[erased]")))]
    nickname: String,
    motto: String,
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn canary(label: &str) -> String {
    format!("{label}-{}", Uuid::now_v7().simple())
}

#[test]
fn debug_and_tracing_output_never_contain_pii() {
    let (student_name, teacher_note, cardholder, email, quiz_name) = (
        canary("student"),
        canary("note"),
        canary("holder"),
        canary("email"),
        canary("quizname"),
    );
    let badge = BadgeAwarded {
        award_id: Uuid::now_v7(),
        student_id: Uuid::now_v7(),
        teacher_id: Uuid::now_v7(),
        student_name: student_name.clone().into(),
        teacher_note: teacher_note.clone().into(),
        badge: "quiz-streak-5".into(),
    };
    let payment = PaymentProcessed {
        payment_id: Uuid::now_v7(),
        payer_id: Uuid::now_v7(),
        cardholder_name: cardholder.clone().into(),
        billing_email: email.clone().into(),
        amount_cents: 4_900,
        currency: "EUR".into(),
        status: PaymentStatus::Captured,
    };
    let quiz = QuizSubmitted {
        quiz_id: Uuid::now_v7(),
        student_id: Uuid::now_v7(),
        student_name: quiz_name.clone().into(),
        score: 0.5,
        answers: vec![],
    };
    let envelope = Envelope::new(&quiz).unwrap();
    let decoded = Registry::global()
        .decode(&envelope.event_type, envelope.version, &envelope.payload)
        .unwrap();

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(event = ?badge, "badge awarded");
        tracing::warn!(?payment, "payment processed");
        tracing::debug!(?envelope, ?decoded, "decoded");
    });

    let debug = format!("{badge:?} {payment:?} {quiz:?} {envelope:?} {decoded:?} {badge:#?}");
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("badge awarded") && logs.contains("quiz-streak-5"),
        "{logs}"
    );
    assert!(debug.contains("<pii>"), "{debug}");
    for secret in [
        &student_name,
        &teacher_note,
        &cardholder,
        &email,
        &quiz_name,
    ] {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret} leaked into logs: {logs}"
        );
        assert!(
            !debug.contains(secret.as_str()),
            "{secret} leaked into Debug: {debug}"
        );
    }
}

#[test]
fn decode_errors_never_quote_payload_values() {
    let secret = canary("secret");
    let payload = serde_json::json!({
        "quiz_id": Uuid::now_v7(),
        "student_id": Uuid::now_v7(),
        "student_name": ["not", "a", "string", secret],
        "score": secret,
    });
    let err = Registry::global()
        .decode("quiz.submitted", 2, &payload)
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(&secret), "{text}");
}

fn profile(display_name: Pii<String>, bio: Option<Pii<String>>, nickname: &str) -> ProfileUpdated {
    ProfileUpdated {
        profile_id: Uuid::nil(),
        student_id: Uuid::nil(),
        display_name,
        bio,
        nickname: nickname.to_owned(),
        motto: "carpe diem".to_owned(),
    }
}

#[test]
fn debug_tells_present_from_erased_pii_without_printing_either() {
    let (name, bio, nickname) = (canary("name"), canary("bio"), canary("nick"));
    let present = format!(
        "{:?}",
        profile(name.clone().into(), Some(bio.clone().into()), &nickname)
    );
    let erased = format!("{:?}", profile(Pii::Erased, Some(Pii::Erased), &nickname));
    let absent = format!("{:?}", profile(Pii::Erased, None, &nickname));

    // Positive control: a plain field is printed, so a leak would be seen.
    assert!(present.contains(r#"motto: "carpe diem""#), "{present}");
    assert!(
        present.contains("display_name: <pii>, bio: Some(<pii>), nickname: <pii>"),
        "{present}"
    );
    assert!(
        erased.contains("display_name: <erased>, bio: Some(<erased>), nickname: <pii>"),
        "{erased}"
    );
    assert!(absent.contains("bio: None"), "{absent}");
    for secret in [&name, &bio, &nickname] {
        for debug in [&present, &erased, &absent] {
            assert!(!debug.contains(secret.as_str()), "{secret} leaked: {debug}");
        }
    }
}
