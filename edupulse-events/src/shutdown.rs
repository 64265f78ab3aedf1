//! One shutdown signal for every loop a service runs (relay, subscribers, the bus's relay):
//! each `run` takes a future, and a future can be awaited once, so a service with two loops
//! needs a signal it can hand out twice.

use std::future::Future;

use tokio::sync::watch;

/// A cloneable shutdown signal: every [`signalled`](Self::signalled) future completes once
/// [`trigger`](Self::trigger) is called (or a signal arrives, for
/// [`on_signals`](Self::on_signals)).
///
/// ```no_run
/// # async fn run() {
/// use edupulse_events::Shutdown;
///
/// let shutdown = Shutdown::on_signals();
/// // One future per loop: `runtime.spawn_relay(shutdown.signalled())`,
/// // `subscriber.run(shutdown.signalled())`, ...
/// let first = tokio::spawn(shutdown.signalled());
/// let second = tokio::spawn(shutdown.signalled());
/// let _ = (first.await, second.await); // both end at Ctrl-C or SIGTERM
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

    /// A signal that completes at Ctrl-C (SIGINT) or SIGTERM (what an orchestrator sends),
    /// or when triggered. Needs a tokio runtime.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            trigger.trigger();
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

    /// A future that completes once the signal is given: one per loop. If every
    /// `Shutdown` is dropped untriggered it never completes (nothing can give the signal).
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            if receiver.wait_for(|triggered| *triggered).await.is_err() {
                std::future::pending::<()>().await;
            }
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

    #[tokio::test]
    async fn dropping_every_handle_untriggered_is_not_a_signal() {
        use futures::FutureExt as _;

        let shutdown = Shutdown::new();
        let signalled = shutdown.signalled();
        drop(shutdown);
        assert!(
            signalled.now_or_never().is_none(),
            "stopped without a signal"
        );
    }
}
