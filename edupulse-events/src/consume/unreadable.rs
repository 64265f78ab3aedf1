//! Finding, after the subscriber's connection dropped, the messages it was sent but can never
//! receive, and setting them aside.
//!
//! Such a message (a frame async-nats cannot parse, see [`frame`](super::frame)) never reaches
//! the subscriber: the client drops the connection instead, so it is neither acknowledged nor
//! refused, and JetStream sends it again after each acknowledgement wait, dropping the
//! connection again, with the messages sent behind it, forever. So the consumer's messages not
//! yet acknowledged (from its acknowledgement floor to the last it was sent) are read from the
//! stream's copy, through the message API whose JSON reply no frame can break, and checked as
//! the client would parse them. One that fails is recorded in `consumer_dead_letters` and
//! terminated, the way an acknowledgement with `+TERM` does it; its acknowledgement subject
//! (`$JS.ACK.<stream>.<consumer>.<deliveries>.<stream sequence>.<consumer sequence>...`) is
//! written out here, since the one the server sent came inside the frame that could not be
//! read. The server takes the consumer sequence from its own pending record, so 0 is given.

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::RawMessage;
use async_nats::jetstream::{self, ErrorCode};
use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};

use super::error::ConsumeError;
use super::frame::{self, Unreadable};

/// Messages read from the stream in one sweep at most: the range from the acknowledgement
/// floor may hold many acknowledged ones above a held-back message; a frame beyond is found
/// by a later sweep, once the floor has moved up to it.
const MAX_SWEPT: usize = 10_000;

/// One stored message the consumer can never receive.
#[derive(Debug)]
pub(super) struct Unreceivable {
    pub(super) sequence: u64,
    pub(super) subject: String,
    pub(super) why: Unreadable,
}

/// What reads the stream's copies of the consumer's unacknowledged messages.
pub(super) struct Sweeper {
    context: jetstream::Context,
    stream: String,
    consumer: String,
    filter: String,
}

#[derive(Serialize)]
struct GetRequest<'a> {
    seq: u64,
    next_by_subj: &'a str,
}

#[derive(Deserialize)]
struct GetReply {
    message: RawMessage,
}

impl Sweeper {
    pub(super) fn new(
        context: jetstream::Context,
        stream: String,
        consumer: String,
        filter: String,
    ) -> Self {
        Sweeper {
            context,
            stream,
            consumer,
            filter,
        }
    }

    /// The consumer's unacknowledged messages that it can never receive, in stream order.
    pub(super) async fn find(
        &self,
        consumer: &PullConsumer,
    ) -> Result<Vec<Unreceivable>, ConsumeError> {
        let info = consumer.get_info().await.map_err(jetstream_error)?;
        // The consumer's own filter: an existing durable consumer keeps the one it was made
        // with, whatever the builder says now.
        let filter = match (
            info.config.filter_subject.as_str(),
            &info.config.filter_subjects[..],
        ) {
            ("", [only]) => only.as_str(),
            ("", []) => ">",
            ("", _) => self.filter.as_str(),
            (filter, _) => filter,
        };
        let last = info.delivered.stream_sequence;
        let mut next = info.ack_floor.stream_sequence.saturating_add(1);
        let mut found = Vec::new();
        for _ in 0..MAX_SWEPT {
            if next > last {
                break;
            }
            let Some(message) = self.stored(next, filter).await? else {
                break;
            };
            if message.sequence > last {
                break;
            }
            let header = match &message.headers {
                Some(text) => Some(Base64::decode_vec(text).map_err(|_| {
                    ConsumeError::JetStream(format!(
                        "the stream's copy of message {} has headers that are not base64",
                        message.sequence
                    ))
                })?),
                None => None,
            };
            if let Err(why) = frame::check(&message.subject, header.as_deref()) {
                found.push(Unreceivable {
                    sequence: message.sequence,
                    subject: message.subject.clone(),
                    why,
                });
            }
            next = message.sequence.saturating_add(1);
        }
        Ok(found)
    }

    /// The first message at or after `sequence` on the consumer's subjects, if any.
    async fn stored(
        &self,
        sequence: u64,
        filter: &str,
    ) -> Result<Option<RawMessage>, ConsumeError> {
        let reply: Response<GetReply> = self
            .context
            .request(
                format!("STREAM.MSG.GET.{}", self.stream),
                &GetRequest {
                    seq: sequence,
                    next_by_subj: filter,
                },
            )
            .await
            .map_err(jetstream_error)?;
        match reply {
            Response::Ok(reply) => Ok(Some(reply.message)),
            Response::Err { error } if error.error_code() == ErrorCode::NO_MESSAGE_FOUND => {
                Ok(None)
            }
            Response::Err { error } => Err(jetstream_error(error)),
        }
    }

    /// Tells JetStream never to deliver `sequence` to the consumer again. Published and
    /// flushed, not requested: the server answers nothing for a message it no longer holds
    /// as pending (one terminated before), and a request would wait out its timeout.
    pub(super) async fn terminate(&self, sequence: u64) -> Result<(), ConsumeError> {
        let subject = format!(
            "$JS.ACK.{}.{}.1.{sequence}.0.0.0",
            self.stream, self.consumer
        );
        let client = self.context.client();
        client
            .publish(subject, "+TERM".into())
            .await
            .map_err(jetstream_error)?;
        client.flush().await.map_err(jetstream_error)?;
        Ok(())
    }
}

fn jetstream_error(err: impl std::fmt::Display) -> ConsumeError {
    ConsumeError::JetStream(err.to_string())
}
