//! The frozen relay of `test_relay_zombie.rs` on a three-server JetStream cluster on loopback
//! (an R3 stream): there every event carries its partition lane's fence, and the events the
//! woken relay still held are refused all the same.

mod common;

use common::own_servers::OwnNatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_frozen_past_the_duplicate_window_on_a_cluster_publishes_nothing() {
    let servers = OwnNatsServer::cluster(3);
    let urls: Vec<String> = servers.iter().map(OwnNatsServer::url).collect();
    common::frozen_relay::frozen_relay_publishes_nothing(&urls.join(","), 3).await;
}
