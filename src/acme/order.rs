//! One ACME order for one name, by `instant-acme`: the account (kept in
//! the state directory, made once), the order, each authorization's
//! challenge put in the [`Challenges`] table for the doors to answer,
//! the CSR (`rcgen`, ECDSA P-256, a new key per certificate), and the
//! issued chain. The challenges are taken out again however the order
//! ends.

use super::client::CaClient;
use super::store::{StateDir, StoreError};
use crate::challenges::Challenges;
use crate::config::{AcmeChallenge, AcmeConfig};
use instant_acme::{
    Account, AccountBuilder, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for the CA to validate the challenges, and then to issue.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The CA said no, or could not be reached, or answered nonsense.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// The state directory could not be used.
    #[error("state: {0}")]
    Store(#[from] StoreError),
    /// The client for the CA could not be made (`ca_file`).
    #[error("ACME client: {0}")]
    Client(String),
    /// The order went somewhere it should not.
    #[error("{0}")]
    Order(String),
    /// The key or CSR could not be made.
    #[error("CSR: {0}")]
    Csr(#[from] rcgen::Error),
}

impl OrderError {
    /// Whether the CA no longer knows the account (e.g. a test CA that
    /// restarted): it is made anew at the next attempt.
    pub fn account_unknown(&self) -> bool {
        matches!(self, OrderError::Acme(instant_acme::Error::Api(p))
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
    }
}

/// A certificate the CA issued: the chain and its new key (PEM).
#[derive(Debug)]
pub struct Issued {
    /// The chain, end-entity certificate first.
    pub chain: String,
    /// Its private key.
    pub key: String,
}

/// An account builder whose HTTP client is floe's ([`CaClient`]).
fn builder(config: &AcmeConfig) -> Result<AccountBuilder, OrderError> {
    let client = CaClient::new(config).map_err(OrderError::Client)?;
    Ok(Account::builder_with_http(Box::new(client)))
}

/// The account for `config.directory`: the one kept in `state`, else a new
/// one (kept there).
pub async fn account(config: &AcmeConfig, state: &StateDir) -> Result<Account, OrderError> {
    let directory = config.directory.as_str();
    if let Some(credentials) = state.account(directory)? {
        return Ok(builder(config)?.from_credentials(credentials).await?);
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = builder(config)?
        .create(&new, directory.to_string(), None)
        .await?;
    state.save_account(directory, &credentials)?;
    tracing::info!(directory, "ACME: account {} made", account.id());
    Ok(account)
}

/// What the doors answer for one order, taken out again on drop.
struct Live<'a> {
    table: &'a Challenges,
    txt: Vec<(String, String)>,
    http: Vec<String>,
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        for (name, value) in &self.txt {
            self.table.remove_txt(name, value);
        }
        for token in &self.http {
            self.table.remove_http(token);
        }
    }
}

/// Orders a certificate for `name` with `account`, answering the
/// challenges through `table`.
pub async fn obtain(
    account: &Account,
    config: &AcmeConfig,
    table: &Arc<Challenges>,
    name: &str,
) -> Result<Issued, OrderError> {
    let identifiers = [Identifier::Dns(name.to_string())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut live = Live {
        table,
        txt: Vec::new(),
        http: Vec::new(),
    };
    let kind = match config.challenge {
        AcmeChallenge::Dns01 => ChallengeType::Dns01,
        AcmeChallenge::Http01 => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(OrderError::Order(format!(
                    "authorization for {name} is {other:?}"
                )));
            }
        }
        let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
            OrderError::Order(format!(
                "the CA offers no {} challenge for {name}",
                config.challenge.as_str()
            ))
        })?;
        let key_authorization = challenge.key_authorization();
        match config.challenge {
            AcmeChallenge::Dns01 => {
                let value = key_authorization.dns_value();
                table.add_txt(name, &value);
                live.txt.push((name.to_string(), value));
            }
            AcmeChallenge::Http01 => {
                let token = challenge.token.clone();
                if !crate::challenges::valid_token(&token) {
                    return Err(OrderError::Order(format!(
                        "the CA sent an HTTP-01 token floe cannot serve ({} bytes, not base64url)",
                        token.len()
                    )));
                }
                table.add_http(&token, key_authorization.as_str());
                live.http.push(token);
            }
        }
        challenge.set_ready().await?;
    }
    let retries = RetryPolicy::new().timeout(POLL_TIMEOUT);
    let status = order.poll_ready(&retries).await?;
    drop(live);
    if status != OrderStatus::Ready {
        return Err(OrderError::Order(format!(
            "order for {name} is {status:?} after validation"
        )));
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&retries).await?;
    Ok(Issued {
        chain,
        key: key.serialize_pem(),
    })
}
