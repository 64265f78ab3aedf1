//! Publishing to NATS JetStream: the stream's provisioning, and the message each event
//! becomes (the JSON payload as body, CloudEvents attributes as headers).

mod headers;
mod stream;

pub use headers::event_headers;
pub use stream::{PublishError, Publisher, StreamSettings};
