//! Shutdown signalling shared by every task: one [`Shutdown`] is triggered
//! (SIGTERM, SIGINT, end of a test), every clone sees it.
//!
//! Each long-running task takes a clone and selects on
//! [`Shutdown::wait`] beside its work, as in mini-redis.

use tokio::sync::watch;

/// A cloneable shutdown flag with an async wait.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A flag not yet triggered.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    /// Triggers shutdown for every clone.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when shutdown is triggered (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which also means shut down.
        let _ = rx.wait_for(|v| *v).await;
    }
}
