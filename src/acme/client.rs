//! The HTTP client that talks to the CA, for `instant-acme`: hyper-util's
//! client over hyper-rustls (ring), trusting `[acme] ca_file`'s roots or
//! else the platform's, with limits on what the CA may make floe hold:
//! each answer's head within [`REQUEST_TIMEOUT`], each body at most
//! [`MAX_BODY`] bytes (the whole order is bounded by
//! [`super::ORDER_TIMEOUT`]).

use crate::config::AcmeConfig;
use bytes::Bytes;
use http_body_util::Limited;
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Longest wait for the head of one answer of the CA.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest body of one answer of the CA: its JSON objects are a few KiB,
/// a certificate chain a few KiB more.
pub const MAX_BODY: usize = 1 << 20;

/// The client `instant-acme` sends its requests through.
pub struct CaClient(HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl CaClient {
    /// A client for `config`'s CA: `ca_file`'s roots when given, else the
    /// platform's.
    pub fn new(config: &AcmeConfig) -> Result<CaClient, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &config.ca_file {
            Some(path) => {
                let roots = crate::tls::load_roots(path).map_err(|e| e.to_string())?;
                let mut store = rustls::RootCertStore::empty();
                for r in roots {
                    store
                        .add(r)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(store)
                    .with_no_client_auth();
                builder.with_tls_config(tls)
            }
            None => builder
                .try_with_platform_verifier()
                .map_err(|e| format!("the system's roots: {e}"))?,
        };
        let connector = builder.https_only().enable_http1().build();
        Ok(CaClient(
            HyperClient::builder(TokioExecutor::new()).build(connector),
        ))
    }
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let answer = self.0.request(req);
        Box::pin(async move {
            let rsp = tokio::time::timeout(REQUEST_TIMEOUT, answer)
                .await
                .map_err(|_| Error::Other(format!("no answer within {REQUEST_TIMEOUT:?}").into()))?
                .map_err(|e| Error::Other(Box::new(e)))?;
            let (parts, body) = rsp.into_parts();
            Ok(BytesResponse::from(Response::from_parts(
                parts,
                Limited::new(body, MAX_BODY),
            )))
        })
    }
}
