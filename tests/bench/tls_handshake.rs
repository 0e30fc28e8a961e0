//! TLS 1.3 handshake-redirect load client, for `tests/bench/tls_nginx.sh`
//! (issue #11 section 4: floe's CPU per handshake against nginx).
//!
//! `cargo bench --bench tls_handshake -- ADDR NAME PATH SECONDS CONNECTIONS [--rate R] [--resume]`
//!
//! Every request is a new TCP connection, a TLS 1.3 handshake (SNI `NAME`,
//! ALPN `http/1.1`), one `GET PATH` with `Connection: close`, and the answer
//! read to its end. Without `--rate`, CONNECTIONS connections run back to
//! back for SECONDS (closed loop: the server's saturation rate). With
//! `--rate R`, a new connection starts every 1/R s (open loop), at most
//! CONNECTIONS at once: a start that finds them all busy is counted as
//! `skipped` (the server, or this client, could not keep the pace).
//!
//! Without `--resume` every handshake is a full one (the client keeps no
//! session). With `--resume` each of the CONNECTIONS loops keeps the
//! tickets its server gave it and offers one on its next connection, as a
//! returning browser does; `resumed` counts the handshakes the server
//! accepted so.
//!
//! h2load does not fit: on a reconnection it always offers the last
//! session (no full handshakes at saturation), and `-c N -n N` opens all N
//! connections at once. `openssl s_time` is one connection at a time.
//!
//! The client checks no certificate (it is a load generator, as h2load;
//! a signature check would cost this core more than the server's signing
//! costs the server's). It checks that the handshake is TLS 1.3 and the
//! answer a `302`: anything else is counted in `non_302` or `errors`, and
//! the first such error is printed on stderr.
//!
//! Prints one line: `rps ok non_302 errors resumed p50_us p99_us max_us
//! skipped params client_core` (latency of a whole connection, from its scheduled start
//! with `--rate`, from its start otherwise; `params`: the key exchange and
//! cipher suite of the first handshake, e.g.
//! `X25519/TLS13_AES_128_GCM_SHA256`; `client_core`: this client's CPU
//! time over the run's time, 1.00 being its whole core).

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, HandshakeKind, ProtocolVersion, SignatureScheme};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The longest one connection may take before it counts as an error.
const CONN_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts any certificate and signature (see the module doc).
#[derive(Debug)]
struct AcceptAnything(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// What the runs found.
#[derive(Default)]
struct Tally {
    ok: u64,
    non_302: u64,
    errors: u64,
    resumed: u64,
    skipped: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
    group: Option<String>,
}

impl Tally {
    fn record(&mut self, result: Result<Done, String>, took: Duration) {
        match result {
            Ok(done) => {
                if done.status_302 {
                    self.ok += 1;
                } else {
                    self.non_302 += 1;
                    self.first_error
                        .get_or_insert_with(|| format!("not a 302: {:?}", done.status_line));
                }
                if done.resumed {
                    self.resumed += 1;
                }
                if self.group.is_none() {
                    self.group = Some(done.group);
                }
                self.latencies_us
                    .push(took.as_micros().min(u32::MAX as u128) as u32);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// One connection's outcome.
struct Done {
    status_302: bool,
    status_line: String,
    resumed: bool,
    group: String,
}

/// What every connection needs.
struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    request: Vec<u8>,
}

/// One connection: connect, handshake, request, answer read to its end.
async fn one(target: &Target, connector: &TlsConnector) -> Result<Done, String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let mut tls = connector
        .connect(target.name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (resumed, group) = {
        let conn = tls.get_ref().1;
        if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
            return Err(format!("not TLS 1.3: {:?}", conn.protocol_version()));
        }
        let kx = conn
            .negotiated_key_exchange_group()
            .map_or("none".into(), |g| format!("{:?}", g.name()));
        let suite = conn
            .negotiated_cipher_suite()
            .map_or("none".into(), |s| format!("{:?}", s.suite()));
        let group = format!("{kx}/{suite}");
        (conn.handshake_kind() == Some(HandshakeKind::Resumed), group)
    };
    tls.write_all(&target.request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 1024];
    let mut filled = 0;
    let mut sink = [0u8; 4096];
    loop {
        let read = if filled < head.len() {
            tls.read(&mut head[filled..]).await
        } else {
            tls.read(&mut sink).await
        };
        match read {
            Ok(0) => break,
            Ok(n) if filled < head.len() => filled += n,
            Ok(_) => {}
            // A server that closes without close_notify after its answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && filled > 0 => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let head = &head[..filled];
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let status_line = String::from_utf8_lossy(&head[..line_end]).into_owned();
    Ok(Done {
        status_302: status_line.starts_with("HTTP/1.1 302 "),
        status_line,
        resumed,
        group,
    })
}

/// A client config: TLS 1.3 only, the cipher suites in the order browsers
/// offer them (AES-128-GCM-SHA256 first: rustls and OpenSSL both follow
/// the client's order), ALPN http/1.1, tickets kept or not.
fn client_config(resume: bool) -> Arc<rustls::ClientConfig> {
    use rustls::crypto::ring::cipher_suite;
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    });
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        Resumption::in_memory_sessions(16)
    } else {
        Resumption::disabled()
    };
    Arc::new(config)
}

/// CPU seconds (user and system) this process has used, from
/// `/proc/self/stat` (0 where there is none).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// `p`-th percentile (0..=1) of sorted `v`.
fn percentile(v: &[u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = "usage: tls_handshake ADDR NAME PATH SECONDS CONNECTIONS [--rate R] [--resume]";
    let addr: SocketAddr = args.first().expect(usage).parse().expect("ADDR");
    let name = ServerName::try_from(args.get(1).expect(usage).clone()).expect("NAME");
    let path = args.get(2).expect(usage);
    let secs: f64 = args.get(3).expect(usage).parse().expect("SECONDS");
    let conns: usize = args.get(4).expect(usage).parse().expect("CONNECTIONS");
    let mut rate = None;
    let mut resume = false;
    let mut rest = args[5..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--rate" => rate = Some(rest.next().expect(usage).parse::<f64>().expect("R")),
            "--resume" => resume = true,
            other => panic!("{usage}: unknown argument {other}"),
        }
    }
    let host = args[1].clone();
    let target = Rc::new(Target {
        addr,
        name,
        request: format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: floe-bench\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
    });
    let tally = Rc::new(RefCell::new(Tally::default()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let duration = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let elapsed = local.block_on(&runtime, async {
        match rate {
            None => closed_loop(&target, &tally, conns, resume, duration).await,
            Some(r) => open_loop(&target, &tally, conns, resume, duration, r).await,
        }
        start.elapsed()
    });
    let mut t = tally.take();
    t.latencies_us.sort_unstable();
    if let Some(e) = &t.first_error {
        eprintln!("tls_handshake: first error: {e}");
    }
    println!(
        "{:.0} {} {} {} {} {} {} {} {} {} {:.2}",
        t.ok as f64 / elapsed.as_secs_f64(),
        t.ok,
        t.non_302,
        t.errors,
        t.resumed,
        percentile(&t.latencies_us, 0.5),
        percentile(&t.latencies_us, 0.99),
        t.latencies_us.last().copied().unwrap_or(0),
        t.skipped,
        t.group.as_deref().unwrap_or("none"),
        own_cpu_seconds() / elapsed.as_secs_f64(),
    );
}

/// CONNECTIONS loops, each one connection after the other until the time
/// is up (each with its own session store when resuming).
async fn closed_loop(
    target: &Rc<Target>,
    tally: &Rc<RefCell<Tally>>,
    conns: usize,
    resume: bool,
    duration: Duration,
) {
    let end = Instant::now() + duration;
    let shared = client_config(false);
    let loops: Vec<_> = (0..conns)
        .map(|_| {
            let (target, tally) = (target.clone(), tally.clone());
            let connector = TlsConnector::from(if resume {
                client_config(true)
            } else {
                shared.clone()
            });
            tokio::task::spawn_local(async move {
                while Instant::now() < end {
                    let began = Instant::now();
                    let r = tokio::time::timeout(CONN_TIMEOUT, one(&target, &connector))
                        .await
                        .unwrap_or_else(|_| Err("timed out".into()));
                    tally.borrow_mut().record(r, began.elapsed());
                }
            })
        })
        .collect();
    for l in loops {
        l.await.expect("connection loop");
    }
}

/// A connection started every 1/`rate` s for `duration`, at most `conns`
/// at once (each start takes the next of `conns` session stores when
/// resuming); then waits for those in flight.
async fn open_loop(
    target: &Rc<Target>,
    tally: &Rc<RefCell<Tally>>,
    conns: usize,
    resume: bool,
    duration: Duration,
    rate: f64,
) {
    let connectors: Vec<TlsConnector> = if resume {
        (0..conns)
            .map(|_| TlsConnector::from(client_config(true)))
            .collect()
    } else {
        vec![TlsConnector::from(client_config(false))]
    };
    let in_flight = Rc::new(RefCell::new(0usize));
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut started = 0u64;
    let mut tick = tokio::time::interval(Duration::from_micros(500));
    let mut handles = Vec::new();
    while started < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while started < due {
            let scheduled = start + Duration::from_secs_f64(started as f64 / rate);
            started += 1;
            if *in_flight.borrow() >= conns {
                tally.borrow_mut().skipped += 1;
                continue;
            }
            *in_flight.borrow_mut() += 1;
            let connector = connectors[started as usize % connectors.len()].clone();
            let (target, tally, in_flight) = (target.clone(), tally.clone(), in_flight.clone());
            handles.push(tokio::task::spawn_local(async move {
                let r = tokio::time::timeout(CONN_TIMEOUT, one(&target, &connector))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                tally.borrow_mut().record(r, scheduled.elapsed());
                *in_flight.borrow_mut() -= 1;
            }));
        }
        handles.retain(|h| !h.is_finished());
    }
    for h in handles {
        h.await.expect("connection");
    }
}
