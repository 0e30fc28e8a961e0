//! `[acme]`: certificates floe obtains and renews itself from an ACME CA
//! (RFC 8555), validated by floe's own doors: DNS-01 answered by its
//! authoritative DNS, or HTTP-01 by its plain HTTP door.
//!
//! A write side beside `poll`: it does network I/O (to the CA) and writes
//! what the read side serves, through two tables below both sides: the
//! live challenges ([`crate::challenges`]) and the obtained certificates
//! with each name's status ([`crate::issued`]). It imports neither `http`
//! nor `dns`.
//!
//! One task per name: at start a still-valid certificate in the state
//! directory is served at once; an order starts when none is held or at
//! `renew_after` of the held one's lifetime ([`schedule`]); a failed order
//! is retried with bounded exponential backoff and jitter while the old
//! certificate (if any) keeps being served; `/status` and `/metrics` show
//! every step. Parts: [`schedule`] (when, pure), [`store`] (the state
//! directory), [`order`] (one order through `instant-acme`), [`client`]
//! (the HTTP client to the CA, with its limits).
//!
//! `[acme]` is read at start; a reload does not change it.

pub mod client;
pub mod order;
pub mod schedule;
pub mod store;

use crate::challenges::Challenges;
use crate::config::AcmeConfig;
use crate::issued::{Issued, NameStatus, OrderResult, Phase};
use crate::shutdown::Shutdown;
use crate::tls::Certificate;
use instant_acme::Account;
use schedule::Next;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::{StateDir, StoreError};

/// Longest one order may take, from the first request to the issued
/// chain: a CA that stops answering fails the order instead of stalling it.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

/// Longest single sleep between looks at the clock: a wait of weeks for a
/// renewal follows the wall clock (suspend, clock steps) to within this.
const MAX_SLEEP: Duration = Duration::from_secs(600);

/// What every name's task shares.
struct Ctx {
    config: AcmeConfig,
    state: StateDir,
    challenges: Arc<Challenges>,
    issued: Arc<Issued>,
    /// The account, made or loaded by the first order that needs it.
    account: tokio::sync::Mutex<Option<Account>>,
}

/// Now, in Unix seconds.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Opens the state directory, serves the certificates already in it and
/// starts one task per name (on the current tokio runtime) until
/// `shutdown`. Fails only when the state directory cannot be made.
pub fn start(
    config: AcmeConfig,
    challenges: Arc<Challenges>,
    issued: Arc<Issued>,
    shutdown: Shutdown,
) -> Result<(), StoreError> {
    let state = StateDir::open(&config.state_dir)?;
    let names = config.names.clone();
    let ctx = Arc::new(Ctx {
        config,
        state,
        challenges,
        issued,
        account: tokio::sync::Mutex::new(None),
    });
    for name in names {
        let held = ctx.held(&name);
        tokio::spawn(run(ctx.clone(), name, held, shutdown.clone()));
    }
    Ok(())
}

impl Ctx {
    /// The status of `name` in `phase`.
    fn status(&self, name: &str, phase: Phase) -> NameStatus {
        let mut s = self.issued.status(name).unwrap_or(NameStatus {
            name: name.to_string(),
            challenge: self.config.challenge.as_str(),
            phase,
            not_after: None,
            next_attempt: None,
            failures: 0,
            last_error: None,
        });
        s.phase = phase;
        s
    }

    /// The certificate kept for `name`, served now if it has not expired:
    /// its validity (not before, not after).
    fn held(&self, name: &str) -> Option<(i64, i64)> {
        let cert = match self.state.certificate(name)? {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    name,
                    "ACME: the certificate kept is unusable ({e}); ordering a new one"
                );
                return None;
            }
        };
        if cert.not_after <= unix_now() || !cert.covers(name) {
            tracing::info!(
                name,
                "ACME: the certificate kept has expired or does not cover the name; ordering a new one"
            );
            return None;
        }
        let validity = (cert.not_before, cert.not_after);
        let next = schedule::renew_at(validity.0, validity.1, self.config.renew_after);
        let mut status = self.status(name, Phase::Valid);
        status.not_after = Some(cert.not_after);
        status.next_attempt = Some(next);
        tracing::info!(
            name,
            not_after = cert.not_after,
            "ACME: serving the certificate kept in the state directory"
        );
        self.issued.serve(status, cert);
        Some(validity)
    }

    /// The account, loaded or made once.
    async fn account(&self) -> Result<Account, order::OrderError> {
        let mut held = self.account.lock().await;
        if let Some(a) = held.as_ref() {
            return Ok(a.clone());
        }
        let a = order::account(&self.config, &self.state).await?;
        *held = Some(a.clone());
        Ok(a)
    }

    /// One order for `name`, its certificate kept and served: its validity.
    async fn order(&self, name: &str) -> Result<(i64, i64), order::OrderError> {
        let account = self.account().await?;
        let result = order::obtain(&account, &self.config, &self.challenges, name).await;
        let issued = match result {
            Ok(i) => i,
            Err(e) => {
                if e.account_unknown() {
                    tracing::warn!("ACME: the CA does not know floe's account; making a new one");
                    self.state.forget_account();
                    *self.account.lock().await = None;
                }
                return Err(e);
            }
        };
        let (cert_path, key_path) = (self.state.cert_path(name), self.state.key_path(name));
        let cert = Certificate::from_pem(
            &cert_path,
            issued.chain.as_bytes(),
            &key_path,
            issued.key.as_bytes(),
        )
        .map_err(|e| order::OrderError::Order(format!("the CA's certificate: {e}")))?;
        if !cert.covers(name) {
            return Err(order::OrderError::Order(format!(
                "the CA's certificate names {}, not {name}",
                cert.names.join(", ")
            )));
        }
        self.state
            .save_certificate(name, &issued.chain, &issued.key)?;
        let validity = (cert.not_before, cert.not_after);
        let mut status = self.status(name, Phase::Valid);
        status.not_after = Some(cert.not_after);
        status.next_attempt = Some(schedule::renew_at(
            validity.0,
            validity.1,
            self.config.renew_after,
        ));
        status.failures = 0;
        status.last_error = None;
        self.issued.serve(status, cert);
        Ok(validity)
    }
}

/// `e` and the errors that caused it (an HTTP client error says
/// "client error (Connect)"; its cause says "Connection refused"), each
/// once.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Sleeps until Unix second `at` (in steps of at most [`MAX_SLEEP`]);
/// false when shutdown came first.
async fn sleep_until(at: i64, shutdown: &Shutdown) -> bool {
    loop {
        let left = at - unix_now();
        if left <= 0 {
            return true;
        }
        let step = Duration::from_secs(left as u64).min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(step) => {}
            _ = shutdown.wait() => return false,
        }
    }
}

/// The task of one name: order when due, serve, renew, retry.
async fn run(ctx: Arc<Ctx>, name: String, mut held: Option<(i64, i64)>, shutdown: Shutdown) {
    let mut failures = 0u32;
    let mut retry_at = None;
    if held.is_none() {
        ctx.issued.set_status(ctx.status(&name, Phase::Starting));
    }
    loop {
        let now = unix_now();
        let due = match (retry_at, schedule::next(held, now, ctx.config.renew_after)) {
            (Some(at), _) => at,
            (None, Next::Order) => now,
            (None, Next::RenewAt(at)) => at,
        };
        if !sleep_until(due, &shutdown).await {
            return;
        }
        let mut status = ctx.status(&name, Phase::Ordering);
        status.next_attempt = None;
        ctx.issued.set_status(status);
        tracing::info!(
            name,
            challenge = ctx.config.challenge.as_str(),
            "ACME: ordering a certificate"
        );
        let result = tokio::select! {
            r = tokio::time::timeout(ORDER_TIMEOUT, ctx.order(&name)) => r,
            _ = shutdown.wait() => return,
        };
        let error = match result {
            Ok(Ok(validity)) => {
                ctx.issued.count(OrderResult::Valid);
                tracing::info!(
                    name,
                    not_after = validity.1,
                    "ACME: certificate issued and served"
                );
                held = Some(validity);
                failures = 0;
                retry_at = None;
                continue;
            }
            Ok(Err(e)) => with_causes(&e),
            Err(_) => format!("no certificate within {ORDER_TIMEOUT:?}"),
        };
        ctx.issued.count(OrderResult::Failed);
        failures = failures.saturating_add(1);
        let wait = schedule::retry_after(
            failures,
            ctx.config.retry_min,
            ctx.config.retry_max,
            rand::random::<f64>(),
        );
        let at = unix_now() + wait.as_secs().max(1) as i64;
        retry_at = Some(at);
        let mut status = ctx.status(&name, Phase::Failed);
        status.failures = failures;
        status.last_error = Some(error.clone());
        status.next_attempt = Some(at);
        ctx.issued.set_status(status);
        tracing::warn!(
            name,
            failures,
            "ACME: order failed: {error}; retrying in {wait:?}{}",
            if held.is_some() {
                " (the current certificate is still served)"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_names_its_causes_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = super::order::OrderError::Client(String::from("x"));
        assert_eq!(super::with_causes(&e), "ACME client: x");
        let store = super::store::StoreError::Io {
            path: "/s".into(),
            source: io,
        };
        assert_eq!(super::with_causes(&store), "/s: refused");
    }
}
