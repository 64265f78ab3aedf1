//! The relay on a three-server JetStream cluster on loopback, started by the test: the
//! library creates a stream of three replicas, and killing the stream's leader (SIGKILL) in
//! the middle of relaying 20,000 events loses and duplicates nothing, every event fenced (by
//! lane, as a cluster needs).

mod common;

use std::time::{Duration, Instant};

use common::backlog::{EVENTS, fill_outbox, until_published};
use common::own_servers::OwnNatsServer;
use common::{TestEnv, assert_exactly_once_in_order};
use edupulse_events::publish::Publisher;
use edupulse_events::relay::{Relay, RelayConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_mid_relay_loses_and_duplicates_nothing() {
    let mut servers = OwnNatsServer::cluster(3);
    let urls: Vec<String> = servers.iter().map(OwnNatsServer::url).collect();
    let env = TestEnv::with_nats(&urls.join(",")).await;
    let settings = env.stream_settings().with_replicas(3);
    let publisher = provisioned(&env, settings).await;
    let info = publisher
        .context()
        .get_stream(&env.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3, "the stream's replicas");
    assert_eq!(
        publisher.fencing(),
        edupulse_events::publish::Fencing::Lanes,
        "a cluster of nats-server 2.11 or later fences by lanes"
    );
    let cluster = info.cluster.expect("a clustered stream");
    assert_eq!(cluster.replicas.len(), 2, "the leader's two followers");

    fill_outbox(&env).await;
    let relay = Relay::new(
        env.store.clone(),
        publisher.clone(),
        RelayConfig {
            batch_size: 500,
            ..RelayConfig::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    until_published(&env.nats, &env.prefix, 3_000).await;
    let leader = stream_leader(&publisher, &env.stream).await;
    let killed = servers
        .iter_mut()
        .find(|server| server.name() == Some(leader.as_str()))
        .expect("the leader is one of the test's servers");
    killed.kill();
    assert!(
        env.count("outbox").await > 0,
        "killed after the relay had finished: nothing was tested"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    while env.count("outbox").await > 0 {
        assert!(
            Instant::now() < deadline,
            "outbox not drained after losing the leader"
        );
        interval.tick().await;
    }
    stop.send(()).unwrap();
    relay.await.unwrap().unwrap();
    let new_leader = stream_leader(&publisher, &env.stream).await;
    assert_ne!(new_leader, leader, "another server leads the stream");
    assert_exactly_once_in_order(&env.stream_messages().await, EVENTS);
    env.cleanup().await;
}

/// The publisher, once the cluster has elected its JetStream meta leader (a few seconds after
/// the servers start; until then stream requests fail).
async fn provisioned(
    env: &TestEnv,
    settings: edupulse_events::publish::StreamSettings,
) -> Publisher {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Publisher::provision(env.nats.clone(), settings.clone()).await {
            Ok(publisher) => return publisher,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "JetStream cluster not ready: {err}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The name of the server leading `stream`'s replicas.
async fn stream_leader(publisher: &Publisher, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = match publisher.context().get_stream(stream).await {
            Ok(mut stream) => stream.info().await.ok().cloned(),
            Err(_) => None,
        };
        if let Some(leader) = info.and_then(|i| i.cluster).and_then(|c| c.leader) {
            return leader;
        }
        assert!(Instant::now() < deadline, "the stream has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
