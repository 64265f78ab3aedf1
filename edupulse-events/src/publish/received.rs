//! The way back from a published message to an [`Envelope`]: the inverse of
//! [`event_headers`](super::event_headers), for consumers that read the stream directly.

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

use crate::envelope::{Envelope, Metadata, TraceContext};

use crate::header_names::names;

/// Why a message is not an event this library published.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiveError {
    /// A header the relay always sets is missing or does not parse.
    #[error("message header `{header}` is missing or malformed")]
    Header {
        /// The header's name.
        header: &'static str,
    },
    /// The body is not a JSON object.
    #[error("message body is not a JSON object")]
    Body,
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, ReceiveError> {
    headers
        .get(name)
        .map(async_nats::HeaderValue::as_str)
        .ok_or(ReceiveError::Header { header: name })
}

fn parsed<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &'static str,
) -> Result<T, ReceiveError> {
    header(headers, name)?
        .parse()
        .map_err(|_| ReceiveError::Header { header: name })
}

fn optional_id(headers: &HeaderMap, name: &'static str) -> Result<Option<Uuid>, ReceiveError> {
    headers
        .get(name)
        .map(|value| {
            value
                .as_str()
                .parse()
                .map_err(|_| ReceiveError::Header { header: name })
        })
        .transpose()
}

/// The envelope of a message the relay published. Its payload is as published: PII still
/// sealed (open it with [`Store::unseal`](crate::store::Store::unseal)). `data_subjects` is left
/// empty: the headers do not carry it, the decoded event does.
pub fn envelope_from_message(
    headers: Option<&HeaderMap>,
    body: &[u8],
) -> Result<Envelope, ReceiveError> {
    let empty = HeaderMap::new();
    let headers = headers.unwrap_or(&empty);
    let type_string = header(headers, names::TYPE)?;
    let (name, version) = type_string
        .rsplit_once(".v")
        .and_then(|(name, version)| Some((name, version.parse().ok()?)))
        .ok_or(ReceiveError::Header {
            header: names::TYPE,
        })?;
    let occurred_at: DateTime<Utc> = DateTime::parse_from_rfc3339(header(headers, names::TIME)?)
        .map_err(|_| ReceiveError::Header {
            header: names::TIME,
        })?
        .with_timezone(&Utc);
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ReceiveError::Body)?;
    if !payload.is_object() {
        return Err(ReceiveError::Body);
    }
    let trace = headers.get(names::TRACEPARENT).map(|parent| TraceContext {
        traceparent: parent.as_str().to_owned(),
        tracestate: headers
            .get(names::TRACESTATE)
            .map(|state| state.as_str().to_owned()),
    });
    Ok(Envelope {
        id: parsed(headers, names::ID)?,
        event_type: name.to_owned(),
        version,
        aggregate_type: header(headers, names::AGGREGATE_TYPE)?.to_owned(),
        aggregate_id: parsed(headers, names::AGGREGATE_ID)?,
        sequence: parsed(headers, names::SEQUENCE)?,
        data_subjects: Vec::new(),
        occurred_at,
        metadata: Metadata {
            correlation_id: optional_id(headers, names::CORRELATION_ID)?,
            causation_id: optional_id(headers, names::CAUSATION_ID)?,
            actor: headers.get(names::ACTOR).map(|a| a.as_str().to_owned()),
            trace,
            extra: std::collections::BTreeMap::default(),
        },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::event_headers;

    #[test]
    fn a_published_envelope_comes_back_from_its_headers_and_body() {
        let mut envelope = Envelope {
            id: Uuid::now_v7(),
            event_type: "quiz.submitted".into(),
            version: 2,
            aggregate_type: "quiz".into(),
            aggregate_id: Uuid::now_v7(),
            sequence: 7,
            data_subjects: Vec::new(),
            occurred_at: Utc::now(),
            metadata: Metadata::default(),
            payload: serde_json::json!({ "score": 1 }),
        }
        .with_actor("teacher:42")
        .with_correlation_id(Uuid::now_v7());
        envelope.metadata.trace = Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        });
        let headers = event_headers(&envelope, "test");
        let body = serde_json::to_vec(&envelope.payload).unwrap();
        let back = envelope_from_message(Some(&headers), &body).unwrap();
        // RFC 3339 in the header keeps the time to the nanosecond.
        assert_eq!(back, envelope);
        let missing = envelope_from_message(None, &body).unwrap_err();
        assert_eq!(
            missing,
            ReceiveError::Header {
                header: names::TYPE
            }
        );
    }
}
