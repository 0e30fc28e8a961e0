//! A minimal DNS client for tests: one query over UDP, the answer parsed
//! with hickory-proto (the codec floe itself uses, not hand-written bytes).

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Asks `server` for `name`/`qtype` once (no retry, RD clear) and waits up
/// to `timeout` for the answer with the query's ID.
pub fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> io::Result<Message> {
    let socket = UdpSocket::bind(if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })?;
    query_on(&socket, server, name, qtype, timeout)
}

/// [`query`] on a socket the caller keeps (load loops).
pub fn query_on(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> io::Result<Message> {
    let id: u16 = rand_id();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    let qname = Name::from_ascii(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    m.add_query(Query::query(qname, qtype));
    let bytes = m.to_vec().map_err(|e| io::Error::other(e.to_string()))?;
    socket.send_to(&bytes, server)?;
    socket.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if from != server {
            continue;
        }
        let answer = Message::from_vec(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        // A late answer to an earlier (timed-out) query: keep waiting.
        if answer.metadata.id == id {
            return Ok(answer);
        }
    }
}

/// The IPv4 addresses in an answer section.
pub fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x4242);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What real `dig` printed for one query.
#[derive(Debug)]
pub struct Dig {
    /// dig's whole output.
    pub text: String,
    /// The response's status (`NOERROR`, `FORMERR`...).
    pub status: String,
    /// The addresses of the answer section's A and AAAA records.
    pub addresses: std::collections::BTreeSet<std::net::IpAddr>,
    /// The echoed EDNS Client Subnet, as dig prints it
    /// (`127.77.1.0/24/16`: address, source, scope).
    pub client_subnet: Option<String>,
    /// The answer's TXT strings, joined.
    pub txt: String,
}

/// Asks `server` with the real `dig` (`+norec`, one try): `qname` `qtype`
/// and `extra` arguments (`+subnet=...`, `-b ADDRESS`).
pub fn dig(server: SocketAddr, qname: &str, qtype: &str, extra: &[&str]) -> Dig {
    super::require_tool("dig");
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), qname, qtype])
        .args(["+norec", "+time=3", "+tries=1"])
        .args(extra)
        .output()
        .expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |after: &str| {
        text.lines()
            .find_map(|l| l.split(after).nth(1))
            .map(|rest| {
                rest.split([',', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
    };
    let answers = || {
        text.lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields.len() >= 5).then(|| (fields[3].to_string(), fields[4..].join(" ")))
            })
    };
    Dig {
        status: field("status: ").unwrap_or_default(),
        client_subnet: field("CLIENT-SUBNET: "),
        addresses: answers()
            .filter(|(t, _)| t == "A" || t == "AAAA")
            .filter_map(|(_, v)| v.parse().ok())
            .collect(),
        txt: answers()
            .filter(|(t, _)| t == "TXT")
            .map(|(_, v)| v.replace('"', ""))
            .collect::<Vec<_>>()
            .join(" "),
        text,
    }
}
