//! Publishing to NATS JetStream: the stream's provisioning, and the message each event
//! becomes (the JSON payload as body, CloudEvents attributes as headers).

mod fence;
mod headers;
mod prefix;
mod received;
mod stream;

pub use crate::header_names::names as header_names;
pub(crate) use fence::is_fenced_out;
pub use fence::{CLUSTER_LANES, Fence, FenceError, Fencing, fence_subject};
pub use headers::event_headers;
pub use prefix::{PrefixError, validate_prefix};
pub use received::{ReceiveError, envelope_from_message};
pub use stream::{PublishError, Publisher, StreamSettings};
