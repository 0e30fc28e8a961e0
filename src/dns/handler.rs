//! The hickory `RequestHandler`: every query the fast path does not take.
//!
//! [`FloeHandler`] answers from the current [`Plan`] (balanced names) and
//! from the zones' in-memory handlers (static records), authoritatively:
//! AA set on answers from a zone, RA never set, REFUSED for names outside
//! floe's zones, NXDOMAIN vs NODATA with the zone's SOA (TTL min(SOA TTL,
//! MINIMUM)) in authority, FORMERR for queries that do not parse or do not
//! have exactly one question, NOTIMP for opcodes other than QUERY, BADVERS
//! for EDNS versions above 0, a minimal answer to ANY (RFC 8482: one RRset),
//! referrals with glue below delegations. Over UDP an answer that does not
//! fit the client's size is replaced by an empty one with TC set. A
//! balanced name answers for the client's listener pool, by the query's
//! EDNS Client Subnet or the resolver's address ([`ecs::client`]); a
//! query's ECS option is echoed with its scope (0 for every answer that
//! does not depend on the client), and a malformed one is FORMERR.
//!
//! A live ACME DNS-01 challenge (`_acme-challenge.<name>`, from
//! [`crate::challenges`]) is answered as a static TXT record of its zone
//! while it lasts.
//!
//! floe's own transports call [`FloeHandler::answer`] with the raw query;
//! the `RequestHandler` impl lets hickory's `Server` drive it too.

use super::answer::{Balanced, Plan};
use super::ecs::{self, ClientSubnet};
use super::stats::QueryKey;
use super::{DnsState, EDNS_PAYLOAD, next_variant, udp_limit};
use hickory_proto::op::{
    Edns, Header, LowerQuery, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::opt::{self, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{LookupOptions, MessageResponseBuilder, ZoneHandler};
use std::future::Future;
use std::iter;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// TTL of a live ACME challenge's TXT records: short, so a resolver
/// between the CA and floe does not keep a value after the challenge (or
/// the next order's value) changed.
pub const CHALLENGE_TTL: u32 = 1;

/// floe's authoritative request handler.
#[derive(Debug, Clone)]
pub struct FloeHandler {
    state: Arc<DnsState>,
}

/// A response before encoding. `None` from [`FloeHandler::reply`] means
/// no response at all (the message was itself a response).
#[derive(Debug)]
pub struct Reply {
    /// Header flags and RCODE.
    pub metadata: Metadata,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (NS of a referral, or the SOA of a negative).
    pub authorities: Vec<Record>,
    /// Additional section (glue), without the OPT record.
    pub additionals: Vec<Record>,
    /// The OPT record, when the query had one.
    pub edns: Option<Edns>,
    /// The zone (index in the plan's zones) of the question, when there is
    /// one question of class IN inside floe's zones.
    pub zone: Option<usize>,
    /// For a balanced answer, its (pool, group) counter slot; else 0.
    pub pool_slot: u8,
}

impl Reply {
    fn new(request: &Request) -> Reply {
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            e
        });
        Reply {
            metadata: Metadata::response_from_request(&request.metadata),
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            edns,
            zone: None,
            pool_slot: 0,
        }
    }

    fn error(mut self, rcode: ResponseCode) -> Reply {
        self.metadata.authoritative = false;
        self.metadata.response_code = rcode;
        self
    }

    /// NXDOMAIN or NODATA: `rcode` with the negative SOA in authority.
    fn negative(mut self, rcode: ResponseCode, soa: &Record) -> Reply {
        self.metadata.response_code = rcode;
        self.authorities.push(soa.clone());
        self
    }
}

impl FloeHandler {
    /// A handler answering from `state`.
    pub fn new(state: Arc<DnsState>) -> FloeHandler {
        FloeHandler { state }
    }

    /// Answers one raw query received over `protocol` from `src`: the
    /// encoded response and where the query is counted (its zone, query
    /// type and the response's extended RCODE), or `None` when nothing must
    /// be sent (a message too short to have a header, or a response).
    pub async fn answer(
        &self,
        raw: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<(Vec<u8>, QueryKey)> {
        if raw.len() < 12 || raw[2] & 0x80 != 0 {
            return None;
        }
        // More than one question is FORMERR (RFC 9619), said before parsing:
        // hickory's parser reserves room for as many questions as the
        // header claims (up to 65,535, 11 MB) before reading the first.
        let questions = u16::from_be_bytes([raw[4], raw[5]]);
        let request = (questions <= 1)
            .then(|| Request::from_bytes(raw.to_vec(), src, protocol).ok())
            .flatten()
            .filter(|r| !points_into_header(raw, r.queries.len()));
        // A malformed client subnet option is FORMERR (RFC 7871 section 6).
        let subnet = request
            .as_ref()
            .map(|_| ecs::opt_options(raw).map_or(Ok(None), ecs::find));
        let (Some(request), Some(Ok(subnet))) = (request, subnet) else {
            let key = QueryKey::unparsed(ResponseCode::FormErr.into());
            return Some((formerr(raw)?, key));
        };
        let plan = self.state.plan(Instant::now());
        let reply = self
            .reply(&request, &plan, next_variant(), subnet.as_ref())
            .await?;
        let max = match protocol {
            Protocol::Udp => udp_limit(request.edns.as_ref().map(Edns::max_payload)),
            _ => usize::from(u16::MAX),
        };
        let qtype = match request.queries.queries() {
            [q] => u16::from(q.query_type()),
            _ => u16::MAX,
        };
        let zone = reply.zone.map(|z| plan.zones.slot(z));
        let slot = reply.pool_slot;
        let rcode = u16::from(reply.metadata.response_code);
        let bytes = encode(&request, reply, max);
        // The header's 4 bits, unless they are the low bits of the reply's
        // extended code (BADVERS); encode may have turned it to SERVFAIL.
        let wire = u16::from(bytes.get(3).map_or(2, |b| b & 0x0f));
        let rcode = if rcode & 0x0f == wire { rcode } else { wire };
        Some((bytes, QueryKey::new(zone, qtype, rcode).with_pool(slot)))
    }

    /// The response to `request` from `plan`, using balanced variant
    /// `variant`, for a query with client subnet `subnet` (read from the
    /// raw query: [`ecs::find`]).
    pub async fn reply(
        &self,
        request: &Request,
        plan: &Plan,
        variant: usize,
        subnet: Option<&ClientSubnet>,
    ) -> Option<Reply> {
        if request.metadata.message_type == MessageType::Response {
            return None;
        }
        let mut reply = Reply::new(request);
        let dns = &plan.snapshot.config().dns;
        // Echoed only when floe uses it; the scope is 0 unless a balanced
        // answer depends on the client.
        let subnet = subnet.filter(|_| dns.ecs && reply.edns.is_some());
        reply.zone = match request.queries.queries() {
            [q] if q.query_class() == DNSClass::IN => plan.zones.find(q.name()).map(|(i, _)| i),
            _ => None,
        };
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Some(reply.error(ResponseCode::BADVERS));
        }
        if request.metadata.op_code != OpCode::Query {
            // RD and CD mean something for QUERY only (RFC 1035 4.1.1, RFC
            // 4035 3.2.2): not echoed for another opcode.
            reply.metadata.recursion_desired = false;
            reply.metadata.checking_disabled = false;
            return Some(reply.error(ResponseCode::NotImp));
        }
        let [query] = request.queries.queries() else {
            return Some(reply.error(ResponseCode::FormErr));
        };
        // Another class has no zone either.
        let Some(zi) = reply.zone else {
            return Some(reply.error(ResponseCode::Refused));
        };
        match query.query_type() {
            // Zone transfers are not offered; OPT is no question.
            RecordType::AXFR | RecordType::IXFR => return Some(reply.error(ResponseCode::Refused)),
            RecordType::OPT => return Some(reply.error(ResponseCode::FormErr)),
            _ => {}
        }
        reply.metadata.authoritative = true;
        let (mut reply, scope) = match plan.find(query.name()) {
            Some(b) => {
                let topology = &plan.snapshot.topology;
                let client = ecs::client(topology, dns, request.src().ip(), subnet, b.varies());
                if matches!(
                    query.query_type(),
                    RecordType::A | RecordType::AAAA | RecordType::ANY
                ) {
                    reply.pool_slot = plan.pool_slot(b, client.pool);
                }
                let reply = balanced(reply, plan, b, client.pool, query, variant);
                (reply, client.scope)
            }
            // Static records: the same for every client.
            None => (self.zone(reply, plan, zi, query).await, 0),
        };
        if let (Some(e), Some(edns)) = (subnet, reply.edns.as_mut()) {
            edns.options_mut()
                .insert(EdnsOption::Subnet(opt::ClientSubnet::new(
                    e.address, e.source, scope,
                )));
        }
        Some(reply)
    }

    /// A static answer from zone `zi`'s records, or a live ACME DNS-01
    /// challenge's TXT records ([`crate::challenges`]): TXT (and ANY)
    /// answered from the challenge table with [`CHALLENGE_TTL`]; another
    /// type at that name is whatever the zone has, NODATA if nothing.
    async fn zone(&self, mut reply: Reply, plan: &Plan, zi: usize, query: &LowerQuery) -> Reply {
        let zones = &plan.zones;
        let name = query.name();
        let soa = zones.negative_soa(zi);
        let live = self.state.challenges.load();
        // Formatting the name costs an allocation: only while a challenge
        // is live.
        let challenge = !live.no_txt() && live.txt(&name.to_string()).is_some();
        if challenge
            && matches!(query.query_type(), RecordType::TXT | RecordType::ANY)
            && let Some(values) = live.txt(&name.to_string())
        {
            let owner = query.original().name();
            reply.answers = values
                .iter()
                .map(|v| {
                    Record::from_rdata(
                        owner.clone(),
                        CHALLENGE_TTL,
                        RData::TXT(TXT::new(vec![v.clone()])),
                    )
                })
                .collect();
            return reply;
        }
        let lookup = zones
            .handler(zi)
            .lookup(name, query.query_type(), None, LookupOptions::default())
            .await;
        match lookup.map_result() {
            Some(Ok(found)) => {
                let records: Vec<Record> = found.iter().cloned().collect();
                let origin = zones.handler(zi).origin();
                let referral = records.first().is_some_and(|r| {
                    r.record_type() == RecordType::NS && LowerName::new(&r.name) != *origin
                });
                if referral {
                    reply.metadata.authoritative = false;
                    reply.additionals = glue(plan, zi, &records);
                    reply.authorities = records;
                } else {
                    reply.answers = records;
                    if let Some(adds) = found.additionals() {
                        reply.additionals = adds.cloned().collect();
                    }
                }
                reply
            }
            Some(Err(e)) if e.is_nx_domain() && !plan.is_above_balanced(name) && !challenge => {
                reply.negative(ResponseCode::NXDomain, soa)
            }
            // The name exists (records of other types, an empty
            // non-terminal, or the parent of a balanced name): NODATA.
            Some(Err(_)) => reply.negative(ResponseCode::NoError, soa),
            None => reply.error(ResponseCode::ServFail),
        }
    }
}

/// A balanced name's answer from the plan for listeners of `pool`: A/AAAA
/// from variant `variant` (ANY answers the A records, RFC 8482), TXT the
/// explanation, NODATA for everything else or an empty variant.
fn balanced(
    mut reply: Reply,
    plan: &Plan,
    b: &Balanced,
    pool: crate::snapshot::PoolId,
    query: &LowerQuery,
    variant: usize,
) -> Reply {
    let owner = query.original().name();
    let b_answer = b.for_pool(pool);
    let records = match query.query_type() {
        RecordType::A | RecordType::AAAA => b_answer.records(query.query_type(), variant, owner),
        RecordType::ANY => b_answer.records(RecordType::A, variant, owner),
        RecordType::TXT if plan.snapshot.config().dns.diagnostic_txt => {
            vec![b.explain_record(&plan.snapshot, plan.generation, pool, owner)]
        }
        _ => Vec::new(),
    };
    if records.is_empty() {
        return reply.negative(ResponseCode::NoError, plan.zones.negative_soa(b.zone));
    }
    reply.answers = records;
    reply
}

/// A/AAAA records, inside zone `zi`, of the name servers of a referral.
fn glue(plan: &Plan, zi: usize, ns: &[Record]) -> Vec<Record> {
    let zone = &plan.zones.set().zones()[zi];
    let mut out = Vec::new();
    for r in ns {
        let RData::NS(target) = &r.data else { continue };
        let target: &Name = &target.0;
        if !zone.origin.zone_of(target) {
            continue;
        }
        for t in [RecordType::A, RecordType::AAAA] {
            if let Some(set) = zone.rrset(target, t) {
                out.extend(set.records_without_rrsigs().cloned());
            }
        }
    }
    out
}

/// Encodes `reply` to at most `max` bytes; when it does not fit, an empty
/// answer with TC set (the client retries over TCP).
pub fn encode(request: &Request, reply: Reply, max: usize) -> Vec<u8> {
    let max = u16::try_from(max).unwrap_or(u16::MAX);
    let mut buf = Vec::with_capacity(512);
    let full = {
        let response = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref()).build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            iter::empty(),
            reply.additionals.iter(),
        );
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        response.destructive_emit(&mut encoder)
    };
    match full {
        Ok(info) if !info.truncation => return buf,
        Ok(_) => {}
        Err(ref e) => tracing::debug!("DNS: encoding a response failed: {e}"),
    }
    // Truncated (or failed): the question alone, TC set (SERVFAIL if even
    // that fails).
    let mut metadata = reply.metadata;
    if full.is_ok() {
        metadata.truncation = true;
    } else {
        metadata.response_code = ResponseCode::ServFail;
        metadata.authoritative = false;
    }
    buf.clear();
    let response = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref())
        .build_no_records(metadata);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_max_size(max);
    if response.destructive_emit(&mut encoder).is_err() {
        buf.clear();
    }
    buf
}

/// Whether a name of the `questions` questions of `raw` (which hickory
/// parsed) is compressed with a pointer into the header, directly or
/// through other pointers. hickory reads such a name, but a response
/// echoes the question section byte for byte, where the pointer then lands
/// on the response's header: an answer that does not parse. Such a query
/// is malformed (a pointer goes to an earlier name, RFC 1035 4.1.4) and
/// gets FORMERR. Found by fuzzing (`tests/fuzz`, target `dns_handler`).
fn points_into_header(raw: &[u8], questions: usize) -> bool {
    let mut next = 12;
    for _ in 0..questions {
        let (mut at, mut end, mut hops) = (next, None, 0);
        loop {
            let Some(&len) = raw.get(at) else {
                return false;
            };
            if len & 0xc0 == 0xc0 {
                let Some(&low) = raw.get(at + 1) else {
                    return false;
                };
                end.get_or_insert(at + 2);
                at = usize::from(len & 0x3f) << 8 | usize::from(low);
                hops += 1;
                if at < 12 {
                    return true;
                }
                if hops > 255 {
                    return false;
                }
            } else if len == 0 {
                end.get_or_insert(at + 1);
                break;
            } else {
                at += 1 + usize::from(len);
            }
        }
        // The name, then its type and class.
        next = end.unwrap_or(at) + 4;
    }
    false
}

/// FORMERR for a query whose header parses but the rest does not: the
/// header's ID, opcode and RD (for QUERY), no question.
fn formerr(raw: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(raw)).ok()?;
    let mut m = Message::new(
        header.metadata.id,
        MessageType::Response,
        header.metadata.op_code,
    );
    m.metadata.recursion_desired =
        header.metadata.recursion_desired && header.metadata.op_code == OpCode::Query;
    m.metadata.response_code = ResponseCode::FormErr;
    m.to_vec().ok()
}

/// Lets hickory's `Server` (or a `Catalog` user) drive floe's handler; it
/// does what `async_trait` would generate for `async fn handle_request`.
impl RequestHandler for FloeHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        mut response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let plan = self.state.plan(Instant::now());
            let fallback = || {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: Default::default(),
                })
            };
            let subnet = request
                .edns
                .as_ref()
                .and_then(|e| e.option(opt::EdnsCode::Subnet))
                .and_then(|o| match o {
                    EdnsOption::Subnet(s) => Vec::<u8>::try_from(s)
                        .ok()
                        .and_then(|data| ClientSubnet::parse(&data).ok()),
                    _ => None,
                });
            let reply = self.reply(request, &plan, next_variant(), subnet.as_ref());
            let Some(reply) = reply.await else {
                return fallback();
            };
            let response = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref())
                .build(
                    reply.metadata,
                    reply.answers.iter(),
                    reply.authorities.iter(),
                    iter::empty(),
                    reply.additionals.iter(),
                );
            match response_handle.send_response(response).await {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!("DNS: sending a response failed: {e}");
                    fallback()
                }
            }
        })
    }
}
