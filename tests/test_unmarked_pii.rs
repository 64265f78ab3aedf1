//! A `Pii` value the derive cannot see (behind a type alias, a renamed import, inside a plain
//! field's own struct, flattened into the payload, written inside a string by a custom
//! serializer, or asking for the plaintext in its own `Serialize`) is refused when the event is put in an
//! envelope, by the `Pii` value itself: nothing reaches PostgreSQL, the stream or an embedded
//! store's files, as text, hex or base64.

mod common;

use common::TestEnv;
use edupulse_events::embedded::SqliteStore;
use edupulse_events::privacy::DataKey;
use edupulse_events::privacy::Pii as Personal;
use edupulse_events::privacy::canary::{Canary, PlaintextScan};
use edupulse_events::privacy::{LocalKeyProvider, Pii, reveal};
use edupulse_events::schemars::JsonSchema;
use edupulse_events::store::{EventStore, ExpectedVersion};
use edupulse_events::{DomainEvent, EncodeError, Envelope, Uuid};
use serde::{Deserialize, Serialize};

type StudentName = Pii<String>;

/// An alias of `Pii`, boxed: the compile-time check sees `Pii`, `Option<Pii>` and `Vec<Pii>`
/// through aliases, not every container.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_unmarked.alias", aggregate = "lesson")]
struct ThroughAlias {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    name: Box<StudentName>,
}

/// `Pii` under another name, in an array.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_unmarked.renamed", aggregate = "lesson")]
struct ThroughRenamedImport {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    names: [Personal<String>; 2],
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "edupulse_events::schemars")]
struct Contact {
    email: Pii<String>,
}

/// A plain field whose own struct holds personal data.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_unmarked.nested", aggregate = "lesson")]
struct NestedStruct {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    contact: Contact,
}

/// The same struct flattened into the payload.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_unmarked.flattened", aggregate = "lesson")]
struct Flattened {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[serde(flatten)]
    contact: Contact,
}

/// A custom serializer that writes a struct holding personal data as JSON text: the marker
/// ends up inside a string, where no scan of the payload can see it.
fn as_json_text<S: serde::Serializer>(contact: &Contact, serializer: S) -> Result<S::Ok, S::Error> {
    let text = serde_json::to_string(contact).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_unmarked.inside_a_string", aggregate = "lesson")]
struct InsideAString {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[serde(serialize_with = "as_json_text")]
    contact: Contact,
}

/// A value whose own `Serialize` asks for the plaintext.
#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "edupulse_events::schemars")]
#[serde(transparent)]
struct Revealing(Pii<String>);

impl Serialize for Revealing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        reveal(|| self.0.serialize(serializer))
    }
}

impl std::fmt::Debug for Revealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_unmarked.revealing", aggregate = "lesson")]
struct RevealingField {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    nickname: Revealing,
}

/// The positive control: a plain (non-personal) field holding a canary is found by the scan.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "test_unmarked.plain", aggregate = "lesson")]
struct PlainNote {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    note: String,
}

/// Each shape with `canary` planted, and the path its envelope must name.
fn shapes(canary: &Canary) -> Vec<(Result<Envelope, EncodeError>, &'static str, bool)> {
    let (lesson_id, student_id) = (Uuid::now_v7(), Uuid::now_v7());
    let text = || Pii::from(canary.as_str());
    let alias = ThroughAlias {
        lesson_id,
        student_id,
        name: Box::new(text()),
    };
    let renamed = ThroughRenamedImport {
        lesson_id,
        student_id,
        names: [Personal::Erased, text()],
    };
    let nested = NestedStruct {
        lesson_id,
        student_id,
        contact: Contact { email: text() },
    };
    let flattened = Flattened {
        lesson_id,
        student_id,
        contact: Contact { email: text() },
    };
    let in_string = InsideAString {
        lesson_id,
        student_id,
        contact: Contact { email: text() },
    };
    let revealing = RevealingField {
        lesson_id,
        student_id,
        nickname: Revealing(text()),
    };
    vec![
        (
            Envelope::new(&in_string),
            "(a value written by custom serialization, e.g. inside a string)",
            serde_json::to_value(&in_string).is_err(),
        ),
        (
            Envelope::new(&revealing),
            "nickname",
            // Outside an envelope, revealing is what this type asked for.
            true,
        ),
        (
            Envelope::new(&alias),
            "name",
            serde_json::to_value(&alias).is_err(),
        ),
        (
            Envelope::new(&renamed),
            "names[1]",
            serde_json::to_value(&renamed).is_err(),
        ),
        (
            Envelope::new(&nested),
            "contact.email",
            serde_json::to_value(&nested).is_err(),
        ),
        (
            Envelope::new(&flattened),
            "email",
            serde_json::to_value(&flattened).is_err(),
        ),
    ]
}

fn assert_refused(canary: &Canary) {
    for (envelope, path, plain_json_refused) in shapes(canary) {
        match envelope {
            Err(EncodeError::UnsealedPii {
                type_name,
                path: found,
            }) => {
                assert_eq!(found, path, "{type_name}");
                let message = EncodeError::UnsealedPii {
                    type_name,
                    path: found,
                }
                .to_string();
                assert!(message.contains(type_name) && message.contains(path));
                assert!(!message.contains(canary.as_str()), "{message}");
            }
            other => panic!("the {path} shape was not refused: {:?}", other.map(|_| ())),
        }
        // Nor can the plaintext be had by serializing the event directly, to build an
        // envelope by hand.
        assert!(plain_json_refused, "{path}: serialized in clear");
    }
}

fn note(canary: &Canary) -> Envelope {
    Envelope::new(&PlainNote {
        lesson_id: Uuid::now_v7(),
        note: canary.as_str().to_owned(),
    })
    .unwrap()
}

#[tokio::test]
async fn unmarked_pii_never_reaches_postgres_or_the_stream() {
    let env = TestEnv::new().await;
    let canary = Canary::new();
    assert_refused(&canary);

    // Positive control: the scan finds a canary that was stored in clear on purpose.
    let control = Canary::new();
    env.store
        .append_committed(ExpectedVersion::NoStream, &[note(&control)])
        .await
        .unwrap();
    env.relay_everything().await;
    let js = async_nats::jetstream::new(env.nats.clone());
    let scan = PlaintextScan::new([canary.clone(), control.clone()])
        .postgres(&env.pool, &env.schema)
        .await
        .unwrap()
        .jetstream(&js, &env.stream)
        .await
        .unwrap();
    let (rows, messages) = scan.scanned();
    assert!(rows > 0 && messages > 0);
    let leaks = scan.leaks();
    assert!(
        leaks.iter().all(|leak| leak.canary == control.as_str()),
        "{leaks:?}"
    );
    assert!(
        leaks.iter().any(|l| l.place.starts_with("postgres:"))
            && leaks.iter().any(|l| l.place.starts_with("jetstream:")),
        "the control was not found in both places: {leaks:?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn unmarked_pii_never_reaches_an_embedded_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path, "test")
        .await
        .unwrap()
        .with_keys(std::sync::Arc::new(LocalKeyProvider::new(
            DataKey::generate(),
        )));
    let canary = Canary::new();
    assert_refused(&canary);
    let control = Canary::new();
    store
        .append_committed(ExpectedVersion::NoStream, &[note(&control)])
        .await
        .unwrap();
    let files = ["events.db", "events.db-wal", "events.db-shm"].map(|f| dir.path().join(f));
    let leaks = PlaintextScan::new([canary, control.clone()])
        .files(&files)
        .unwrap()
        .leaks();
    assert!(!leaks.is_empty(), "the control was not found");
    assert!(
        leaks.iter().all(|leak| leak.canary == control.as_str()),
        "{leaks:?}"
    );
}

#[test]
fn reveal_is_the_one_way_to_the_plaintext() {
    let name: Pii<String> = Pii::from("Ada");
    assert!(serde_json::to_value(&name).is_err());
    assert_eq!(reveal(|| serde_json::to_value(&name)).unwrap(), "Ada");
    // Erased serializes anywhere: it holds nothing.
    assert!(serde_json::to_value(Pii::<String>::Erased).is_ok());
}
