//! `tail`: the stream as a person reads it, decoded through the binary's types, personal data
//! masked (the events' `Debug`), without disturbing any consumer (an ordered, ephemeral one).

use std::io::Write;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;

use crate::runtime::Runtime;

use super::{AdminError, report};

pub(super) async fn tail(
    runtime: &Runtime,
    filter: &str,
    from_start: bool,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let settings = runtime.publisher().settings();
    let jetstream = |e: &dyn std::fmt::Display| AdminError::JetStream(e.to_string());
    // A connection of its own, as every reader of the subject space has.
    let client = runtime.connect_nats().await.map_err(|e| jetstream(&e))?;
    let stream = async_nats::jetstream::new(client)
        .get_stream(&settings.name)
        .await
        .map_err(|e| jetstream(&e))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            // Below the prefix, or whole (`edupulse.quiz.>`): both mean the same subjects.
            filter_subject: if filter.starts_with(&format!("{}.", settings.prefix)) {
                filter.to_owned()
            } else {
                format!("{}.{filter}", settings.prefix)
            },
            deliver_policy: if from_start {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        })
        .await
        .map_err(|e| jetstream(&e))?;
    // `--from-start --limit n` reads what the stream holds and stops there, fewer than `n`
    // included; without a limit it follows new events as they come.
    let stop_when_caught_up = from_start && limit.is_some();
    if stop_when_caught_up && consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.map_err(|e| jetstream(&e))?;
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut shown = 0;
    while limit.is_none_or(|limit| shown < limit) {
        let message = tokio::select! {
            biased;
            _ = &mut interrupted => break,
            next = messages.next() => match next {
                Some(Ok(message)) => message,
                Some(Err(err)) => return Err(jetstream(&err)),
                None => break,
            },
        };
        let (sequence, caught_up) = message
            .info()
            .map_or((0, false), |info| (info.stream_sequence, info.pending == 0));
        match runtime.decode_message(&message).await {
            Ok((envelope, event)) => {
                report::event(out, &format!("#{sequence}"), &envelope, &event)?;
            }
            Err(err) => writeln!(out, "#{sequence} {}: cannot decode: {err}", message.subject)?,
        }
        out.flush()?;
        shown += 1;
        if stop_when_caught_up && caught_up {
            break;
        }
    }
    Ok(())
}
