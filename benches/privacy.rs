//! What sealing costs per PII field: seal + open of one value, beside the JSON encode and
//! decode of the same value that every field pays anyway (the baseline), in the same run.
//! Run `cargo bench --bench privacy`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use edupulse_events::Uuid;
use edupulse_events::privacy::{DataKey, FieldContext, open, seal};

const ROUNDS: usize = 200_000;

fn per_field(mut f: impl FnMut(usize)) -> Duration {
    for i in 0..ROUNDS / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..ROUNDS {
        f(i);
    }
    start.elapsed() / ROUNDS as u32
}

fn main() {
    let key = DataKey::generate();
    let subject = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    let ctx = FieldContext {
        event_id,
        event_type: "quiz.submitted",
        version: 2,
        field: "student_name",
    };
    let value = serde_json::Value::String("Ada Lovelace, class 4b".to_owned());

    let json = per_field(|_| {
        let text = serde_json::to_vec(black_box(&value)).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&text).unwrap();
        black_box(back);
    });
    let sealed = per_field(|_| {
        let text = serde_json::to_vec(black_box(&value)).unwrap();
        let sealed = seal(&key, subject, 1, &ctx, &text);
        let form = sealed.to_json();
        let parsed = edupulse_events::privacy::SealedField::from_json(&form, &ctx)
            .unwrap()
            .unwrap();
        let plain = open(&key, &ctx, &parsed).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        black_box(back);
    });
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let text = serde_json::to_vec(&value).unwrap();
        let one = seal(&key, subject, 1, &ctx, &text);
        let form = one.to_json();
        println!("    seal {:?}", per_field(|_| { black_box(seal(&key, subject, 1, &ctx, &text)); }));
        println!("    open {:?}", per_field(|_| { black_box(open(&key, &ctx, &one).unwrap()); }));
        println!("    to_json {:?}", per_field(|_| { black_box(one.to_json()); }));
        println!("    from_json {:?}", per_field(|_| { black_box(edupulse_events::privacy::SealedField::from_json(&form, &ctx)); }));
    }
    println!(
        "per PII field, encode + decode: plain JSON {json:?} | sealed (seal, $pii form, parse, open) {sealed:?} | added {:?} (target: under 2 µs)",
        sealed.saturating_sub(json)
    );
}
