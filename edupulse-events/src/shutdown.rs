//! One shutdown signal for every loop a service runs (relay, subscribers, the bus's relay):
//! each `run` takes a future, and a future can be awaited once, so a service with two loops
//! needs a signal it can hand out twice.

use std::future::Future;

use tokio::sync::watch;

/// A cloneable shutdown signal: every [`signalled`](Self::signalled) future completes once
/// [`trigger`](Self::trigger) is called (or Ctrl-C arrives, for [`on_ctrl_c`](Self::on_ctrl_c)).
///
/// ```no_run
/// # async fn run(runtime: edupulse_events::Runtime) {
/// use edupulse_events::Shutdown;
///
/// let shutdown = Shutdown::on_ctrl_c();
/// let relay = runtime.spawn_relay(shutdown.signalled());
/// // ... subscriber.run(shutdown.signalled()).await ...
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    /// A signal that completes when [`trigger`](Self::trigger) is called.
    pub fn new() -> Self {
        Shutdown {
            sender: watch::Sender::new(false),
        }
    }

    /// A signal that completes at Ctrl-C (SIGINT), or when triggered. Needs a tokio runtime.
    pub fn on_ctrl_c() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                trigger.trigger();
            }
        });
        shutdown
    }

    /// Completes every `signalled` future, those made later included.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the signal was given.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// A future that completes once the signal is given: one per loop.
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            // An error means every sender is gone, which cannot happen while `self` lives in
            // the clone this future does not hold; treat it as the signal all the same.
            let _ = receiver.wait_for(|triggered| *triggered).await;
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Shutdown;

    #[tokio::test]
    async fn every_signalled_future_completes_once_triggered_even_one_made_after() {
        let shutdown = Shutdown::new();
        let first = tokio::spawn(shutdown.signalled());
        let second = tokio::spawn(shutdown.signalled());
        assert!(!first.is_finished() && !shutdown.is_triggered());
        shutdown.clone().trigger();
        first.await.unwrap();
        second.await.unwrap();
        shutdown.signalled().await;
    }
}
