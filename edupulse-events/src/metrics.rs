//! What the runtime reports through the [`metrics`] facade: install any recorder (Prometheus,
//! StatsD, ...) in the application and these appear; without one they cost nothing.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `edupulse_relay_published_total` | counter | events published and acknowledged by JetStream |
//! | `edupulse_relay_dead_letters_total` | counter | events the relay set aside in `dead_letters` |
//! | `edupulse_outbox_lag_seconds` | gauge | age of the oldest event in the relay's last batch (0 when idle) |
//! | `edupulse_relay_batch_events` | histogram | events per relay batch |
//! | `edupulse_relay_publish_seconds` | histogram | time to publish a batch and collect its acknowledgements |
//! | `edupulse_erasures_total` | counter | data subjects erased |
//! | `edupulse_consumer_applied_total{consumer}` | counter | events a subscriber applied |
//! | `edupulse_consumer_dead_letters_total{consumer}` | counter | messages a subscriber set aside |
//! | `edupulse_consumer_stalled_total{consumer,fault}` | counter | messages held back for a cause outside them |
//! | `edupulse_consumer_reconnects_total{consumer}` | counter | times a subscriber's own connection dropped and came back |
//! | `edupulse_consumer_reconnect_loop{consumer}` | gauge | 1 while a subscriber's connection keeps dropping, else 0 |

/// Events published and acknowledged.
pub const RELAY_PUBLISHED: &str = "edupulse_relay_published_total";
/// Relay steps that failed (a publish not acknowledged, the database unreachable): each is
/// followed by a back-off.
pub const RELAY_FAILED_STEPS: &str = "edupulse_relay_failed_steps_total";
/// The back-off the relay is waiting out after failed steps, in seconds; 0 once it recovered.
pub const RELAY_BACKOFF_SECONDS: &str = "edupulse_relay_backoff_seconds";
/// Events the relay set aside.
pub const RELAY_DEAD_LETTERS: &str = "edupulse_relay_dead_letters_total";
/// Age of the oldest event in the last batch.
pub const OUTBOX_LAG: &str = "edupulse_outbox_lag_seconds";
/// Events per relay batch.
pub const RELAY_BATCH_EVENTS: &str = "edupulse_relay_batch_events";
/// Publishing a batch.
pub const RELAY_PUBLISH_SECONDS: &str = "edupulse_relay_publish_seconds";
/// Data subjects erased.
pub const ERASURES: &str = "edupulse_erasures_total";
/// Events a subscriber applied.
pub const CONSUMER_APPLIED: &str = "edupulse_consumer_applied_total";
/// Messages a subscriber set aside.
pub const CONSUMER_DEAD_LETTERS: &str = "edupulse_consumer_dead_letters_total";
/// Messages a consumer could not decode for a cause outside the message (the database, the
/// key provider, a wrong master key, missing keys) and holds back until it passes; labelled
/// by consumer and `fault` (`transient` or `configuration`).
pub const CONSUMER_STALLED: &str = "edupulse_consumer_stalled_total";
/// Times a subscriber's own connection dropped and came back: what a frame the client cannot
/// parse does (such a message is then set aside), as do a server restart and a network fault.
pub const CONSUMER_RECONNECTS: &str = "edupulse_consumer_reconnects_total";
/// 1 while a subscriber's connection keeps dropping (again within twice the acknowledgement
/// wait), 0 once it has been steady that long.
pub const CONSUMER_RECONNECT_LOOP: &str = "edupulse_consumer_reconnect_loop";
