//! The AsyncAPI document describes what the stream carries: one event of every catalogued
//! type is appended (personal data present, an optional one absent, one subject erased and
//! scrubbed before the relay reads the log), relayed to JetStream, read back raw by a plain
//! consumer, and each body is validated by a JSON Schema validator against the payload schema
//! the document gives for its `ce-type`. The unsealed payloads fail the same schemas.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{TestEnv, header};
use edupulse_domain::{
    Answer, BadgeAwarded, LearningPulseCreated, LearningPulseResponded, LessonPublished,
    PaymentProcessed, PaymentStatus, QuizClosed, QuizEvent, QuizPublished, QuizSubmitted,
    QuizSubmittedV1, UserEraseRequested,
};
use edupulse_events::aggregate::AggregateEvent;
use edupulse_events::chrono::Utc;
use edupulse_events::privacy::{SEALED_MARKER, Scrub};
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{AsyncApiInfo, DomainEvent, Envelope, Registry, Uuid};
use serde_json::{Value, json};

fn document() -> Value {
    let mut info = AsyncApiInfo::new("EduPulse Live", "1.0.0");
    info.subject_prefix = "edupulse".into();
    Registry::global().catalog().to_asyncapi(&info)
}

/// A validator per message type (`quiz.submitted.v2`), each over the whole document with its
/// root pointing at that message's payload, so the payload's `$ref`s into
/// `#/components/schemas` resolve as any AsyncAPI tool resolves them.
fn payload_validators(document: &Value) -> BTreeMap<String, jsonschema::Validator> {
    let messages = document["components"]["messages"].as_object().unwrap();
    messages
        .iter()
        .map(|(id, message)| {
            let mut root = document.clone();
            root["$ref"] = json!(format!("#/components/messages/{id}/payload"));
            let validator = jsonschema::draft202012::new(&root)
                .unwrap_or_else(|e| panic!("the payload schema of {id}: {e}"));
            (message["name"].as_str().unwrap().to_owned(), validator)
        })
        .collect()
}

fn problems(validator: &jsonschema::Validator, body: &Value) -> Vec<String> {
    validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// Every PII value of a raw body, by its shape on the wire.
#[derive(Debug, Default)]
struct Seen {
    sealed: usize,
    erased: usize,
    null: usize,
}

impl Seen {
    fn count(&mut self, type_name: &str, body: &Value) {
        let descriptor = Registry::global().get_type(type_name).unwrap();
        for pii in descriptor.pii_fields() {
            match &body[pii.field.json] {
                Value::Null => self.null += 1,
                value if value[SEALED_MARKER] == "erased" => self.erased += 1,
                value if value[SEALED_MARKER].is_string() => self.sealed += 1,
                _ => panic!(
                    "{type_name}.{} is neither sealed nor erased",
                    pii.field.json
                ),
            }
        }
    }
}

#[tokio::test]
async fn every_raw_message_on_the_stream_matches_its_payload_schema_in_the_asyncapi_document() {
    let env = TestEnv::new().await;
    let (ada, grace, teacher) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let lesson_id = Uuid::now_v7();
    let pulse_id = Uuid::now_v7();
    let lesson = LessonPublished {
        lesson_id,
        course_id: Uuid::now_v7(),
        teacher_id: teacher,
        teacher_name: "Mr Babbage".into(),
        title: "Engines".into(),
        published_at: Utc::now(),
    };
    let quiz_v1 = QuizSubmittedV1 {
        quiz_id: Uuid::now_v7(),
        student_id: grace,
        student_name: "Grace Hopper".into(),
        correct: 7,
        total: 8,
    };
    let quiz = QuizSubmitted {
        quiz_id: Uuid::now_v7(),
        student_id: ada,
        student_name: "Ada Lovelace".into(),
        score: 0.75,
        answers: vec![Answer {
            question: 1,
            choice: "b".into(),
            correct: true,
        }],
    };
    let badge = BadgeAwarded {
        award_id: Uuid::now_v7(),
        student_id: ada,
        teacher_id: teacher,
        student_name: "Ada Lovelace".into(),
        teacher_note: "Well done, Ada".into(),
        badge: "quiz-streak-5".into(),
    };
    let payment = PaymentProcessed {
        payment_id: Uuid::now_v7(),
        payer_id: grace,
        cardholder_name: "G HOPPER".into(),
        billing_email: "grace@example.com".into(),
        amount_cents: 1200,
        currency: "EUR".into(),
        status: PaymentStatus::Captured,
    };
    let pulse = LearningPulseCreated {
        pulse_id,
        lesson_id,
        teacher_id: teacher,
        question: "How was it?".into(),
        options: vec!["fine".into(), "lost".into()],
    };
    let answered = [
        LearningPulseResponded {
            pulse_id,
            student_id: grace,
            choice: 0,
            comment: Some("more examples, please".into()),
        },
        LearningPulseResponded {
            pulse_id,
            student_id: grace,
            choice: 1,
            comment: None,
        },
    ];
    let erase_requested = UserEraseRequested {
        user_id: ada,
        requested_by: ada,
        requested_at: Utc::now(),
    };
    let quiz_id = Uuid::now_v7();
    let quiz_life = [
        QuizEvent::from(QuizPublished {
            quiz_id,
            lesson_id,
            teacher_id: teacher,
            max_attempts: 2,
        }),
        QuizEvent::from(QuizClosed {
            quiz_id,
            teacher_id: teacher,
        }),
    ];
    for event in &quiz_life {
        env.store
            .append_committed(ExpectedVersion::Any, &[event.to_envelope().unwrap()])
            .await
            .unwrap();
    }
    env.append(std::slice::from_ref(&lesson)).await;
    env.append(std::slice::from_ref(&quiz_v1)).await;
    env.append(std::slice::from_ref(&quiz)).await;
    env.append(std::slice::from_ref(&badge)).await;
    env.append(std::slice::from_ref(&payment)).await;
    env.append(std::slice::from_ref(&pulse)).await;
    env.append(&answered).await;
    env.append(std::slice::from_ref(&erase_requested)).await;
    // Ada is erased and her stored ciphertext scrubbed before the relay reads the log, so her
    // values go out as the erased marker; the erasure appends privacy.subject_erased.
    env.store
        .erase_subject(ada, "wire schema test", Scrub::StoredCiphertext)
        .await
        .unwrap();
    env.relay_everything().await;

    let document = document();
    let validators = payload_validators(&document);
    let mut seen = Seen::default();
    let mut types = BTreeSet::new();
    let messages = env.stream_messages().await;
    assert_eq!(messages.len(), 12);
    for message in &messages {
        let type_name = header(message, "ce-type");
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        let validator = validators
            .get(type_name)
            .unwrap_or_else(|| panic!("{type_name} is not in the document"));
        let problems = problems(validator, &body);
        assert!(problems.is_empty(), "{type_name}: {problems:#?}\n{body:#}");
        seen.count(type_name, &body);
        types.insert(type_name.to_owned());
    }
    // Every catalogued type went over the wire, and every shape of a PII value with it.
    let catalogued: BTreeSet<String> = Registry::global()
        .catalog()
        .events
        .iter()
        .map(|e| e.type_name.to_owned())
        .collect();
    assert_eq!(types, catalogued);
    assert_eq!((seen.sealed, seen.erased, seen.null), (6, 2, 1), "{seen:?}");

    // The negative controls: the payloads in clear fail the same schemas, at their PII.
    let plaintext = [
        Envelope::new(&lesson).unwrap(),
        Envelope::new(&quiz_v1).unwrap(),
        Envelope::new(&quiz).unwrap(),
        Envelope::new(&badge).unwrap(),
        Envelope::new(&payment).unwrap(),
        Envelope::new(&answered[0]).unwrap(),
    ];
    for envelope in &plaintext {
        let type_name = envelope.type_string();
        let problems = problems(&validators[&type_name], &envelope.payload);
        let pii = Registry::global()
            .get_type(&type_name)
            .unwrap()
            .pii_fields();
        assert_eq!(problems.len(), pii.len(), "{type_name}: {problems:#?}");
        for field in pii {
            let at = format!("at /{}", field.field.json);
            assert!(
                problems.iter().any(|p| p.ends_with(&at)),
                "{at}: {problems:#?}"
            );
        }
    }
    // A sealed value's text must have the sealed form, and nothing may sit beside it.
    let sealed = messages
        .iter()
        .find(|m| header(m, "ce-type") == QuizSubmittedV1::TYPE)
        .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap())
        .unwrap();
    let validator = &validators[QuizSubmittedV1::TYPE];
    let form = sealed["student_name"][SEALED_MARKER].as_str().unwrap();
    for broken in [
        json!({ SEALED_MARKER: form.replacen("1.", "2.", 1) }),
        json!({ SEALED_MARKER: form.to_uppercase() }),
        json!({ SEALED_MARKER: form, "name": "Grace" }),
        json!({ SEALED_MARKER: "erased", "name": "Grace" }),
        json!({ SEALED_MARKER: null }),
        Value::Null,
    ] {
        let mut body = sealed.clone();
        body["student_name"] = broken.clone();
        assert!(!validator.is_valid(&body), "{broken}");
    }
    env.cleanup().await;
}
