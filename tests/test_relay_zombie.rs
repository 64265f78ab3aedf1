//! A relay process frozen (SIGSTOP) after a standby took its partitions over, woken after the
//! duplicate window: the events it still held are refused by JetStream (the standby's fences),
//! and the stream ends with every event once, each aggregate in order. On its own in this
//! binary, so the frozen relay is not starved by other tests into waking with nothing to send.

mod common;

use common::own_servers::OwnNatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_frozen_past_the_duplicate_window_after_losing_leadership_publishes_nothing() {
    let nats = OwnNatsServer::start();
    common::frozen_relay::frozen_relay_publishes_nothing(&nats.url(), 1).await;
}
