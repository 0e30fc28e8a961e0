//! A small HTTPS server for the pages a browser test loads: fixed paths
//! with fixed bodies, served over TLS (rustls, a certificate from
//! [`super::pki::TestCa`]) on a loopback port of its own, so the page's
//! origin differs from floe's and the relay's and CORS is real.
//!
//! It runs on its own tokio runtime, stopped (with every connection) on
//! drop. Every request is counted by path, so a test can tell that the
//! browser really loaded a page.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use super::pki::Issued;

/// Time a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One page: content type and body.
#[derive(Clone, Debug)]
pub struct Page {
    pub content_type: &'static str,
    pub body: String,
}

impl Page {
    /// An HTML page (UTF-8).
    pub fn html(body: &str) -> Page {
        Page {
            content_type: "text/html; charset=utf-8",
            body: body.to_string(),
        }
    }
}

/// A running HTTPS page server.
pub struct PageServer {
    addr: SocketAddr,
    host: String,
    requests: Arc<Mutex<HashMap<String, u32>>>,
    // Dropping the runtime stops the accept loop and every connection.
    runtime: Option<tokio::runtime::Runtime>,
}

impl PageServer {
    /// Serves `pages` (path -> page; `/favicon.ico` is an empty `204`,
    /// anything else `404`) over TLS with `cert` on a free loopback port.
    /// `host` is the name pages are reached by (one of the certificate's
    /// names).
    pub fn start(cert: &Issued, host: &str, pages: Vec<(&str, Page)>) -> PageServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
        .expect("page server certificate");
        let mut config = config;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let pages: Arc<HashMap<String, Page>> = Arc::new(
            pages
                .into_iter()
                .map(|(path, page)| (path.to_string(), page))
                .collect(),
        );
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("page server runtime");
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("page server address");
        let counts = requests.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let (acceptor, pages, counts) = (acceptor.clone(), pages.clone(), counts.clone());
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let response = respond(&pages, &counts, req.uri().path());
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        PageServer {
            addr,
            host: host.to_string(),
            requests,
            runtime: Some(runtime),
        }
    }

    /// `https://HOST:PORT` + `path` (HOST as given to [`PageServer::start`]).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.addr.port())
    }

    /// The origin of its pages, `https://HOST:PORT`.
    pub fn origin(&self) -> String {
        self.url("")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests asked for `path`.
    pub fn requests(&self, path: &str) -> u32 {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn respond(
    pages: &HashMap<String, Page>,
    counts: &Mutex<HashMap<String, u32>>,
    path: &str,
) -> Response<Full<Bytes>> {
    *counts.lock().unwrap().entry(path.to_string()).or_default() += 1;
    let (status, content_type, body) = match pages.get(path) {
        Some(page) => (StatusCode::OK, page.content_type, page.body.clone()),
        // Browsers ask for it: no icon, and no 404 in the console.
        None if path == "/favicon.ico" => (StatusCode::NO_CONTENT, "image/x-icon", String::new()),
        None => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("page response")
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
