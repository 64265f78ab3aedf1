//! The SQL names that appends and the relay must agree on to wake a parked relay (see the
//! migration `wake_parked_relay`), as macros so they can be spliced into `concat!` constants.

/// The advisory-lock class of the parking locks (the second key is the outbox partition).
macro_rules! parked_lock_class {
    () => {
        "hashtext(current_schema() || ':edupulse-parked')"
    };
}

/// The NOTIFY channel of the store in the current schema. Hashed: a channel name is an
/// identifier (63 bytes at most), and so is the schema's name.
macro_rules! notify_channel {
    () => {
        "'edupulse_outbox_' || md5(current_schema())"
    };
}
