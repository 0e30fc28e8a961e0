//! TLS certificates of the HTTP door (`[http] tls_listen`): PEM files read,
//! checked and held ready for handshakes.
//!
//! [`Certificate::load`] reads one certificate chain and its private key
//! (PEM, at most [`MAX_PEM_BYTES`] each), checks that the key belongs to the
//! certificate, and reads the names the certificate covers and when it
//! expires. [`CertStore`] holds every certificate of a config and picks one
//! per handshake by the client's SNI name (exact name first, then a
//! `*.example.org` wildcard; the first certificate for clients that send no
//! name or a name none covers). [`server_config`] makes the rustls server
//! config (ring, as the poller's client; ALPN `h2` and `http/1.1`), with
//! the session tickets and cache of a [`Resumption`] (made once by the
//! HTTP door and shared by all its configs, old and new).
//! Beside the config's store, a listener serves the certificates floe
//! obtained itself ([`Obtained`], swapped whole by the ACME client while
//! floe runs): a name the config's certificates cover exactly or by
//! wildcard takes theirs, then an obtained one, then the config's first.
//!
//! Loading happens with the config (`config::load`), so `floe check` and
//! every reload see the same checks, and a certificate that fails to load
//! fails the reload: the last good config, certificates included, keeps
//! serving. No network I/O and no state here.

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most bytes a certificate or key file may hold: a chain of a few
/// certificates is a few KiB; a path to a device or a huge file is an error,
/// not a read that never ends.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PEM_BYTES`].
    #[error("{path}: more than {MAX_PEM_BYTES} bytes: not a PEM certificate or key")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM `CERTIFICATE` (or a broken one).
    #[error("{path}: no PEM certificate ({detail})")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The file holds no usable PEM private key.
    #[error("{path}: no usable PEM private key ({detail})")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The certificate is not valid X.509 DER.
    #[error("{path}: not an X.509 certificate ({detail})")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} is not the private key of the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate names no DNS name (no subjectAltName DNS entry, no
    /// common name).
    #[error("{path}: the certificate names no DNS name")]
    NoNames {
        /// The file.
        path: PathBuf,
    },
}

/// One loaded certificate: the chain and key rustls serves, and what
/// `floe check`, `/status` and `/metrics` say about it.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// DNS names it covers (subjectAltName, or the common name without
    /// one), lowercase; wildcards as written (`*.example.org`).
    pub names: Vec<String>,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
}

impl PartialEq for Certificate {
    /// Same files with the same certificate chain.
    fn eq(&self, other: &Self) -> bool {
        self.cert_path == other.cert_path
            && self.key_path == other.key_path
            && self.key.cert == other.key.cert
    }
}

/// The crypto provider floe uses for TLS (ring, as the poller).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A file's bytes, at most [`MAX_PEM_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The PEM certificates in `path` (at most [`MAX_PEM_BYTES`]), as trust
/// roots: `[acme] ca_file`, the CA that signs an ACME server's own HTTPS
/// certificate. At least one.
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_bounded(path)?;
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            detail: "no \"BEGIN CERTIFICATE\" section".into(),
        });
    }
    Ok(roots)
}

impl Certificate {
    /// Reads the chain in `cert_path` (end-entity certificate first) and the
    /// key in `key_path`, checks they belong together and reads the names
    /// and validity.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Certificate, TlsError> {
        let cert_pem = read_bounded(cert_path)?;
        let key_pem = read_bounded(key_path)?;
        Certificate::from_pem(cert_path, &cert_pem, key_path, &key_pem)
    }

    /// [`Certificate::load`] from bytes already read (`*_path` name them in
    /// messages).
    pub fn from_pem(
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<Certificate, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::NoCertificate {
                path: cert_path.to_path_buf(),
                detail: e.to_string(),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCertificate {
                path: cert_path.to_path_buf(),
                detail: "no \"BEGIN CERTIFICATE\" section".into(),
            });
        };
        let (names, not_before, not_after) =
            describe(leaf).map_err(|detail| TlsError::BadCertificate {
                path: cert_path.to_path_buf(),
                detail,
            })?;
        if names.is_empty() {
            return Err(TlsError::NoNames {
                path: cert_path.to_path_buf(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
            path: key_path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            },
            e => TlsError::NoKey {
                path: key_path.to_path_buf(),
                detail: e.to_string(),
            },
        })?;
        Ok(Certificate {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            names,
            not_after,
            not_before,
            key: Arc::new(key),
        })
    }

    /// Whether this certificate covers `name` (lowercase): exactly, or by a
    /// wildcard one label deep.
    pub fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, name))
    }
}

/// Whether certificate name `pattern` covers host `name` (both lowercase).
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

/// The DNS names, not-before and not-after (Unix seconds) of a DER
/// certificate.
fn describe(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    let v = cert.validity();
    Ok((names, v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Every certificate of a config, and the SNI choice between them.
#[derive(Debug, Default, PartialEq)]
pub struct CertStore {
    /// In config order; the first is the default.
    certs: Vec<Certificate>,
    /// Exact (non-wildcard) name -> index in `certs` (first wins).
    exact: HashMap<String, usize>,
}

impl CertStore {
    /// A store of `certs` (the first is the default).
    pub fn new(certs: Vec<Certificate>) -> CertStore {
        let mut exact = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for n in c.names.iter().filter(|n| !n.starts_with("*.")) {
                exact.entry(n.clone()).or_insert(i);
            }
        }
        CertStore { certs, exact }
    }

    /// The certificates, in config order.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certs
    }

    /// The certificate for SNI name `sni` (any case): the first covering
    /// it exactly, else by wildcard, else the first one. `None` only for an
    /// empty store.
    pub fn pick(&self, sni: Option<&str>) -> Option<&Certificate> {
        sni.and_then(|s| self.find(s))
            .or_else(|| self.certs.first())
    }

    /// The first certificate covering `sni` (any case, trailing dot or
    /// not) exactly, else by wildcard; no default.
    pub fn find(&self, sni: &str) -> Option<&Certificate> {
        let s = sni.trim_end_matches('.').to_ascii_lowercase();
        match self.exact.get(&s) {
            Some(&i) => self.certs.get(i),
            None => self.certs.iter().find(|c| c.covers(&s)),
        }
    }
}

/// The certificates floe obtained itself (ACME), swapped whole when one is
/// issued or renewed; handshakes read it lock free.
pub type Obtained = ArcSwap<CertStore>;

/// rustls's view of the config's [`CertStore`] and the [`Obtained`] one.
#[derive(Debug)]
struct Resolver {
    configured: Arc<CertStore>,
    obtained: Arc<Obtained>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let obtained = self.obtained.load();
        pick_from(&self.configured, &obtained, hello.server_name()).map(|c| c.key.clone())
    }
}

/// The certificate for SNI name `sni`: the configured one covering it,
/// else an obtained one covering it, else the first configured, else the
/// first obtained.
pub fn pick_from<'a>(
    configured: &'a CertStore,
    obtained: &'a CertStore,
    sni: Option<&str>,
) -> Option<&'a Certificate> {
    sni.and_then(|s| configured.find(s).or_else(|| obtained.find(s)))
        .or_else(|| configured.certs.first())
        .or_else(|| obtained.certs.first())
}

/// TLS 1.2 session ids [`Resumption`] keeps (TLS 1.3, and TLS 1.2 clients
/// that take tickets, need none): a few hundred KiB at most.
pub const SESSION_CACHE_ENTRIES: usize = 1024;

/// How a returning client resumes its TLS session (a handshake without the
/// certificate signature): the session ticket key (rustls's ring
/// `Ticketer`: ChaCha20-Poly1305, a new random key every 6 hours, tickets
/// good for 12) and a cache of TLS 1.2 session ids.
///
/// One per process, shared by the rustls config of every listener and
/// worker and kept across reloads (which rebuild those configs): a client
/// resumes on whichever worker the kernel hands its connection, after any
/// number of other clients, until floe restarts. rustls's own default, a
/// 256-entry cache in each config, kept the last ~128 clients of one
/// worker until the next reload.
pub struct Resumption {
    /// `None` when the system gave no random key (then sessions resume
    /// from `cache` only).
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    cache: Arc<rustls::server::ServerSessionMemoryCache>,
}

impl Resumption {
    /// A new ticket key and an empty cache. Fails only when the system
    /// has no random numbers for the key; [`Resumption::without_tickets`]
    /// is the fallback.
    pub fn new() -> Result<Resumption, rustls::Error> {
        Ok(Resumption {
            ticketer: Some(rustls::crypto::ring::Ticketer::new()?),
            ..Resumption::without_tickets()
        })
    }

    /// Sessions kept in the shared cache only (TLS 1.3 tickets that are
    /// cache keys): resumption for the last [`SESSION_CACHE_ENTRIES`] / 2
    /// clients.
    pub fn without_tickets() -> Resumption {
        Resumption {
            ticketer: None,
            cache: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
        }
    }
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption")
            .field("tickets", &self.ticketer.is_some())
            .finish_non_exhaustive()
    }
}

/// The rustls server config of a TLS listener: certificates from
/// `configured` or `obtained` by SNI ([`pick_from`]), ALPN `h2` then
/// `http/1.1`, TLS 1.2 and 1.3, sessions resumed by `resumption`.
pub fn server_config(
    configured: Arc<CertStore>,
    obtained: Arc<Obtained>,
    resumption: &Resumption,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver {
            configured,
            obtained,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = resumption.cache.clone();
    if let Some(ticketer) = &resumption.ticketer {
        config.ticketer = ticketer.clone();
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn load(cert: &str, key: &str) -> Result<Certificate, TlsError> {
        Certificate::from_pem(
            Path::new("c.pem"),
            cert.as_bytes(),
            Path::new("k.pem"),
            key.as_bytes(),
        )
    }

    #[test]
    fn a_certificate_loads_with_its_names_and_expiry() {
        let (c, k) = make(&["Stream.Example.org", "*.cdn.example.org"]);
        let cert = load(&c, &k).unwrap();
        assert_eq!(cert.names, ["stream.example.org", "*.cdn.example.org"]);
        assert!(cert.not_after > cert.not_before);
        assert!(cert.covers("a.cdn.example.org"));
        assert!(!cert.covers("a.b.cdn.example.org"));
        assert!(!cert.covers("cdn.example.org"));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (c, _) = make(&["a.example.org"]);
        let (_, k) = make(&["a.example.org"]);
        let err = load(&c, &k).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("k.pem is not the private key"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_refused_with_the_file_named() {
        let (c, k) = make(&["a.example.org"]);
        let err = load("not pem at all", &k).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().starts_with("c.pem:"), "{err}");
        let err = load(&c, "junk").unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = load(broken, &k).unwrap_err();
        assert!(matches!(err, TlsError::BadCertificate { .. }), "{err}");
    }

    #[test]
    fn configs_of_one_resumption_share_its_ticket_key() {
        let (c, k) = make(&["a.example.org"]);
        let store = Arc::new(CertStore::new(vec![load(&c, &k).unwrap()]));
        let resumption = Resumption::new().unwrap();
        let obtained = Arc::new(Obtained::default());
        let config = |r: &Resumption| server_config(store.clone(), obtained.clone(), r).unwrap();
        let before = config(&resumption);
        let reloaded = config(&resumption);
        assert!(before.ticketer.enabled());
        let ticket = before.ticketer.encrypt(b"session").unwrap();
        assert_eq!(
            reloaded.ticketer.decrypt(&ticket).as_deref(),
            Some(&b"session"[..])
        );
        let restarted = config(&Resumption::new().unwrap());
        assert_eq!(restarted.ticketer.decrypt(&ticket), None);
        let cache_only = config(&Resumption::without_tickets());
        assert!(!cache_only.ticketer.enabled());
    }

    #[test]
    fn sni_picks_the_certificate_that_covers_the_name() {
        let (c1, k1) = make(&["one.example.org"]);
        let (c2, k2) = make(&["two.example.org", "*.two.example.org"]);
        let store = CertStore::new(vec![load(&c1, &k1).unwrap(), load(&c2, &k2).unwrap()]);
        let pick = |s| store.pick(s).unwrap().names[0].clone();
        assert_eq!(pick(Some("TWO.example.org.")), "two.example.org");
        assert_eq!(pick(Some("x.two.example.org")), "two.example.org");
        assert_eq!(pick(Some("one.example.org")), "one.example.org");
        assert_eq!(pick(Some("other.example.net")), "one.example.org");
        assert_eq!(pick(None), "one.example.org");
        assert!(CertStore::new(Vec::new()).pick(None).is_none());
    }

    #[test]
    fn obtained_certificates_serve_names_the_configured_ones_do_not_cover() {
        let (c1, k1) = make(&["one.example.org"]);
        let (c2, k2) = make(&["acme.example.org"]);
        let configured = CertStore::new(vec![load(&c1, &k1).unwrap()]);
        let obtained = CertStore::new(vec![load(&c2, &k2).unwrap()]);
        let empty = CertStore::new(Vec::new());
        let pick = |c, o, s| pick_from(c, o, s).map(|c: &Certificate| c.names[0].clone());
        let one = Some("one.example.org".to_string());
        let acme = Some("acme.example.org".to_string());
        assert_eq!(pick(&configured, &obtained, Some("ACME.example.org")), acme);
        assert_eq!(pick(&configured, &obtained, Some("one.example.org")), one);
        assert_eq!(pick(&configured, &obtained, Some("x.example.org")), one);
        assert_eq!(pick(&empty, &obtained, None), acme);
        assert_eq!(pick(&empty, &empty, None), None);
    }
}
