//! Listener pools end to end, with real components only: three real
//! Icecast relays (each on its own loopback address, fed by ffmpeg) in two
//! groups, the venue's (two small relays, exclusive: the venue's uplink
//! serves the hall only) and the world's (one relay); the hall's network
//! 127.0.1.0/24 prefers the venue, everyone else (127.0.2.x here) the
//! world.
//!
//! 1. Real `curl --interface` from each network gets a 302 to its own
//!    group's relays; `/explain?client=` says why.
//! 2. Real curl listeners from the hall, following the 302 and staying
//!    connected, fill the venue relays and spill over to the world relay,
//!    one by one and then in a burst: no relay refuses anyone (no 403/404)
//!    and no relay's own count ever goes past its `max-listeners` (while
//!    a request straight to a full relay is refused: the control). floe's
//!    own account per door, pool and group (`floe_pool_answers_total`,
//!    `floe_spillovers_total`) matches exactly.
//! 3. Real unbound with the `subnetcache` module sends EDNS Client Subnet
//!    to floe: `dig -b` from the two networks gets the venue's resp. the
//!    world's relay addresses, and a second client of an already answered
//!    network is answered from unbound's cache (floe's DNS counters do not
//!    move) while a new network is asked of floe.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::curl::{CurlListener, Landing, curl_once, parse_dump};
use support::dns::dig;
use support::floe::{FloeProcess, cell};
use support::unbound::Unbound;
use support::{IcecastRelay, Lab, RelaySpec, prom};

const T: Duration = Duration::from_secs(20);
const MOUNT: &str = "/live.ogg";
/// `<max-listeners>` of each venue relay and of the world relay.
const VENUE_MAX: u64 = 2;
const WORLD_MAX: u64 = 20;
const RELAYS: [&str; 3] = ["venue-1", "venue-2", "world-1"];
/// Listeners of part 2's burst from the hall and from elsewhere.
const HALL_BURST: usize = 12;
const WORLD_BURST: usize = 4;
/// The address of the one listener that bypasses floe (and is refused).
const CONTROL: &str = "127.0.9.9";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A hall (venue) listener's address: 127.0.1.N.
fn hall(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 1, n])
}

/// A listener's address outside the hall: 127.0.2.N.
fn world(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 2, n])
}

/// The floe config of this test, the example of docs/operations.md
/// ("Venue + world") on loopback.
fn config(lab: &Lab) -> String {
    let mut relays = String::new();
    for r in &lab.relays {
        relays += &format!(
            "[[relay]]\nname = \"{}\"\nurl = \"{}\"\naddresses = [\"{}\"]\nstatus = {{ kind = \"xslt\" }}\n\n",
            r.name(),
            r.base_url(),
            r.address(),
        );
    }
    format!(
        r#"[dns]
listen = ["127.0.0.1:0"]
zones = "zones"
# Answers stay in resolvers' caches for the whole test.
ttl = "60s"
min_ttl = "60s"

[http]
listen = ["127.0.0.1:0"]
workers = 2

[poll]
# Icecast counts a listener (and answers it) when its source thread next
# wakes for data: 10-490 ms after floe's 302 here, idle; more on a loaded
# machine. A grant must keep counting until then (`settle`), or the next
# listener may be sent to a relay that is full (a 403: seen once in about
# ten loaded runs with settle 500ms). `settle` only works below the
# interval (the grant sample is taken after the previous poll), hence
# 1s and 800ms rather than the suite's usual 300ms polls.
interval = "1s"
settle = "800ms"
timeout = "500ms"
rise = 1
fall = 1

[[stream]]
name = "live"
mounts = ["{MOUNT}"]
dns = ["live.stream.example.org."]

{relays}[[group]]
name = "venue"
relays = ["venue-1", "venue-2"]
exclusive = true

[[group]]
name = "world"
relays = ["world-1"]

[[pool]]
name = "hall"
networks = ["127.0.1.0/24"]
order = ["venue", "world"]

[[pool]]
name = "default"
order = ["world"]
"#
    )
}

/// The relay (by name) a URL points at, from the relays' addresses.
fn relay_of(lab: &Lab, url: &str) -> String {
    lab.relays
        .iter()
        .find(|r| url.starts_with(&r.base_url()))
        .map(|r| r.name().to_string())
        .unwrap_or_else(|| panic!("{url} is no relay's"))
}

/// Waits until no listener is on any relay and every grant is reconciled
/// by a poll that started after `after` (a generation): all the room is
/// free again. (`free`, not `room`: `/status.json` shows the default
/// pool's decision, where the venue's exclusive relays have none.)
fn wait_all_room_back(floe: &FloeProcess, after: u64) {
    floe.wait_status(T, "listeners and grants gone, all room back", |s| {
        s["generation"].as_u64().unwrap_or(0) > after
            && RELAYS.iter().all(|r| {
                let c = cell(s, r, MOUNT);
                let max = if r.starts_with("venue") {
                    VENUE_MAX
                } else {
                    WORLD_MAX
                };
                c["listeners"] == 0 && c["in_flight"] == 0 && c["free"].as_u64() == Some(max)
            })
    });
}

fn generation(floe: &FloeProcess) -> u64 {
    floe.status()["generation"].as_u64().unwrap_or(0)
}

/// Samples every relay's own listener count (its `/status-json.xsl`) until
/// stopped; the most each relay ever had.
struct Sampler<'a> {
    stop: AtomicBool,
    lab: &'a Lab,
}

impl Sampler<'_> {
    fn run(&self) -> (BTreeMap<String, u64>, usize) {
        let mut most = BTreeMap::new();
        let mut samples = 0;
        while !self.stop.load(Ordering::Relaxed) {
            for r in &self.lab.relays {
                if let Ok(Some(n)) = r.listeners(MOUNT) {
                    let m = most.entry(r.name().to_string()).or_insert(0);
                    *m = n.max(*m);
                }
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(25));
        }
        (most, samples)
    }
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Where each of `listeners` landed; panics on any that did not get a 200
/// from a relay after exactly one redirect (floe's). Also notes, in
/// `slowest`, the longest a listener took from floe's 302 to the relay's
/// answer (as seen by polling curl's dump).
fn landings(
    lab: &Lab,
    listeners: &mut [CurlListener],
    slowest: &mut Duration,
) -> Vec<(IpAddr, String)> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for l in listeners.iter_mut() {
        let landing = l.landing(T);
        if let Ok(x) = &landing {
            let d = x.landed_in.saturating_sub(x.first_head_in);
            *slowest = (*slowest).max(d);
        }
        match landing {
            Ok(Landing { heads, url, .. }) if heads.len() == 2 && heads[1].status == 200 => {
                out.push((l.from(), relay_of(lab, &url)))
            }
            Ok(landing) => refused.push(format!("{} -> {landing:?}", l.from())),
            Err(e) => refused.push(e),
        }
    }
    assert!(
        refused.is_empty(),
        "listeners not admitted by a relay after floe's 302: {refused:#?}"
    );
    out
}

/// Tallies landings by relay.
fn tally(landed: &[(IpAddr, String)]) -> BTreeMap<String, u64> {
    let mut t = BTreeMap::new();
    for (_, r) in landed {
        *t.entry(r.clone()).or_default() += 1;
    }
    t
}

/// Queries of type `qtype` in `zone` floe counted
/// (`floe_dns_queries_total`, every RCODE) in a `/metrics` exposition.
fn queries(metrics: &str, zone: &str, qtype: &str) -> u64 {
    prom::samples(metrics)
        .iter()
        .filter(|(name, labels, _)| {
            name == "floe_dns_queries_total" && labels["zone"] == zone && labels["qtype"] == qtype
        })
        .map(|s| s.2)
        .sum::<f64>() as u64
}

/// The answers per door, pool and group floe counted
/// (`floe_pool_answers_total` or `floe_spillovers_total`), series at 0
/// left out (the DNS door exports its slots from the start).
fn per_pool(metrics: &str, family: &str) -> BTreeMap<(String, String, String), u64> {
    prom::samples(metrics)
        .into_iter()
        .filter(|(name, _, v)| name == family && *v > 0.0)
        .map(|(_, l, v)| {
            (
                (l["door"].clone(), l["pool"].clone(), l["group"].clone()),
                v as u64,
            )
        })
        .collect()
}

/// floe's count of the A queries it answered for the zone, from a
/// `/metrics` page rendered after everything before the call: `/metrics`
/// is rendered at most once a second per generation, so each reading
/// first asks floe a marker query (MX, which nothing else asks) and waits
/// for a page that counts it.
struct DnsQueries<'a> {
    floe: &'a FloeProcess,
    markers: u64,
}

impl DnsQueries<'_> {
    const ZONE: &'static str = "stream.example.org.";

    fn a(&mut self) -> u64 {
        let marker = dig(self.floe.dns(), Self::ZONE, "MX", &[]);
        assert_eq!(marker.status, "NOERROR", "{}", marker.text);
        self.markers += 1;
        let mut last = String::new();
        support::poll(T, Duration::from_millis(20), || {
            last = self.floe.get("/metrics").text();
            (queries(&last, Self::ZONE, "MX") >= self.markers)
                .then(|| queries(&last, Self::ZONE, "A"))
        })
        .unwrap_or_else(|| panic!("/metrics never counted marker {}:\n{last}", self.markers))
    }
}

/// A relay's access log: (listeners served, with a 200; lines with a
/// refusal, 403 or 404, except the control's; the control's refusals).
/// Icecast logs a listener when it leaves.
fn access_log(relay: &IcecastRelay) -> (usize, Vec<String>, usize) {
    let log = std::fs::read_to_string(relay.dir().join("log/access.log")).unwrap_or_default();
    let served = log
        .lines()
        .filter(|l| l.contains(&format!("\"GET {MOUNT} ")) && l.contains("\" 200 "))
        .count();
    let (control, refused): (Vec<&str>, Vec<&str>) = log
        .lines()
        .filter(|l| l.contains("\" 403 ") || l.contains("\" 404 "))
        .partition(|l| l.starts_with(&format!("{CONTROL} ")));
    let refused = refused.into_iter().map(str::to_string).collect();
    (served, refused, control.len())
}

#[test]
fn venue_and_world_pools_with_real_icecast_curl_and_unbound() {
    let t0 = Instant::now();
    let lab = Lab::start(vec![
        RelaySpec::new("venue-1")
            .bind("127.0.10.1")
            .mount(MOUNT, Some(VENUE_MAX as u32)),
        RelaySpec::new("venue-2")
            .bind("127.0.10.2")
            .mount(MOUNT, Some(VENUE_MAX as u32)),
        RelaySpec::new("world-1")
            .bind("127.0.20.1")
            .mount(MOUNT, Some(WORLD_MAX as u32)),
    ]);
    eprintln!("3 relays with their sources ready in {:?}", lab.ready_in);
    let floe = FloeProcess::start(&config(&lab));
    floe.wait_healthy(T);
    floe.wait_status(T, "every relay up, carrying the mount", |s| {
        RELAYS.iter().all(|r| {
            let c = cell(s, r, MOUNT);
            c["present"] == true && c["free"].as_u64().unwrap_or(0) > 0
        })
    });
    let venue_room = 2 * VENUE_MAX as usize;
    let venue_ips = BTreeSet::from([ip("127.0.10.1"), ip("127.0.10.2")]);
    let world_ips = BTreeSet::from([ip("127.0.20.1")]);
    let stream = floe.url(MOUNT);

    // 3. DNS first, while every relay has room: a real resolver sending
    //    EDNS Client Subnet caches one answer per pool network.
    let t = Instant::now();
    let unbound = Unbound::start(
        "stream.example.org",
        floe.dns(),
        &format!(
            "module-config: \"subnetcache iterator\"\n\
             send-client-subnet: {}\n\
             max-client-subnet-ipv4: 24\n\
             qname-minimisation: no",
            floe.dns().ip()
        ),
        T,
    );
    let name = "live.stream.example.org.";
    let resolve = |from: IpAddr| {
        let d = dig(
            unbound.addr(),
            name,
            "A",
            &["+rec", "-b", &from.to_string()],
        );
        assert_eq!(
            d.status,
            "NOERROR",
            "{}\nunbound log:\n{}",
            d.text,
            unbound.log()
        );
        d.addresses
    };
    // What floe tells a resolver: the hall's /24 is the hall's; the
    // world's answer holds for the widest network clear of the hall.
    let direct = dig(floe.dns(), name, "A", &["+subnet=127.0.1.0/24"]);
    assert_eq!(direct.addresses, venue_ips, "{}", direct.text);
    assert_eq!(direct.client_subnet.as_deref(), Some("127.0.1.0/24/24"));
    let direct = dig(floe.dns(), name, "A", &["+subnet=127.0.2.0/24"]);
    assert_eq!(direct.addresses, world_ips, "{}", direct.text);
    assert_eq!(direct.client_subnet.as_deref(), Some("127.0.2.0/24/23"));

    let mut asked = DnsQueries {
        floe: &floe,
        markers: 0,
    };
    let before = asked.a();
    assert_eq!(
        resolve(hall(10)),
        venue_ips,
        "the hall resolves to the venue's relays"
    );
    let after_hall = asked.a();
    assert!(after_hall > before, "unbound asked floe for the hall's /24");
    assert_eq!(
        resolve(world(10)),
        world_ips,
        "elsewhere resolves to the world's relay"
    );
    let after_world = asked.a();
    let per_network = after_world - after_hall;
    assert!(per_network >= 1, "unbound asked floe for 127.0.2.0/24");
    // Second clients of the answered networks: from unbound's cache.
    assert_eq!(resolve(hall(20)), venue_ips);
    assert_eq!(resolve(world(20)), world_ips);
    // 127.0.3.x is inside the world answer's scope (/23): cached too.
    assert_eq!(resolve(ip("127.0.3.7")), world_ips);
    assert_eq!(
        asked.a(),
        after_world,
        "second clients of an answered scope are answered from unbound's cache"
    );
    // A network outside every answered scope: floe is asked again, once
    // (as often as for the first world client: no cached query leaked).
    assert_eq!(resolve(ip("127.0.4.7")), world_ips);
    let after_new = asked.a();
    assert_eq!(
        after_new - after_world,
        per_network,
        "a new network costs floe what 127.0.2.0/24 did"
    );
    eprintln!(
        "DNS through unbound with ECS: {} A queries to floe for the hall's first client, \
         {per_network} for each new network, 0 for cached scopes ({:?})",
        after_hall - before,
        t.elapsed()
    );

    // 1. One request each, without following: each network's own group.
    let e = floe.get(&format!("/explain{MOUNT}?client={}", hall(1)));
    assert!(
        e.text().contains(
            "listener pool: hall (groups tried in order: venue, world; answering: venue)"
        ),
        "{}",
        e.text()
    );
    let e = floe.get(&format!("/explain{MOUNT}?client={}", world(1)));
    assert!(e.text().contains("listener pool: default"), "{}", e.text());
    let during = generation(&floe);
    let a = curl_once(&stream, hall(1), T);
    assert_eq!(a.status, 302, "{a:?}");
    assert!(relay_of(&lab, &a.location).starts_with("venue-"), "{a:?}");
    let a = curl_once(&stream, world(1), T);
    assert_eq!(a.status, 302, "{a:?}");
    assert_eq!(relay_of(&lab, &a.location), "world-1", "{a:?}");
    // Those two redirects took grants nobody used: wait them out.
    wait_all_room_back(&floe, during);

    // 2. Fill the venue with real listeners, while sampling every relay's
    //    own count.
    let sampler = Sampler {
        stop: AtomicBool::new(false),
        lab: &lab,
    };
    let ((most, samples), (one_by_one, burst)) = std::thread::scope(|s| {
        let sampling = s.spawn(|| sampler.run());
        // Stops the sampler however fill ends (a panic too: the scope
        // joins it before the panic goes on).
        let outcome = {
            let _stop = StopOnDrop(&sampler.stop);
            fill(&lab, &floe, &stream)
        };
        (sampling.join().unwrap(), outcome)
    });
    eprintln!("one by one: {one_by_one:?}; burst: {burst:?}");
    eprintln!("most listeners each relay counted ({samples} samples): {most:?}");
    for r in &lab.relays {
        let max = if r.name().starts_with("venue") {
            VENUE_MAX
        } else {
            WORLD_MAX
        };
        let seen = most.get(r.name()).copied().unwrap_or(0);
        assert!(
            seen <= max,
            "{} counted {seen} listeners (max {max})",
            r.name()
        );
        let (served, refused, control) = access_log(r);
        assert!(refused.is_empty(), "{} refused: {refused:#?}", r.name());
        // The log shows refusals: the control's is there.
        let expected = usize::from(r.name() == "venue-1");
        assert_eq!(control, expected, "{}: the control's 403 logged", r.name());
        // At least the one-by-one listeners, gone before the burst.
        assert!(
            served >= one_by_one[r.name()] as usize,
            "{} logged {served}",
            r.name()
        );
    }
    assert_eq!(most.get("venue-1"), Some(&VENUE_MAX), "the venue was full");
    assert_eq!(most.get("venue-2"), Some(&VENUE_MAX), "the venue was full");

    // floe's own account of it, per door, pool and group: HTTP, the two
    // 302s of part 1 and the listeners of part 2 (the hall's beyond the
    // venue's room spilled over); DNS, the balanced answers (two direct
    // digs, three questions of unbound's).
    let key = |door: &str, pool: &str, group: &str| (door.into(), pool.into(), group.into());
    let hall_venue = 1 + 2 * venue_room;
    // Every world-1 listener but the burst's from outside the hall.
    let hall_world = one_by_one["world-1"] + burst["world-1"] - WORLD_BURST as u64;
    let answers = BTreeMap::from([
        (key("http", "hall", "venue"), hall_venue as u64),
        (key("http", "hall", "world"), hall_world),
        (key("http", "default", "world"), 1 + WORLD_BURST as u64),
        (key("dns", "hall", "venue"), 2),
        (key("dns", "default", "world"), 3),
    ]);
    let spilled = BTreeMap::from([(key("http", "hall", "world"), hall_world)]);
    let mut last = String::new();
    support::poll(T, Duration::from_millis(50), || {
        last = floe.get("/metrics").text();
        (per_pool(&last, "floe_pool_answers_total") == answers
            && per_pool(&last, "floe_spillovers_total") == spilled)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "pool answers {:?} (want {answers:?}), spillovers {:?} (want {spilled:?})",
            per_pool(&last, "floe_pool_answers_total"),
            per_pool(&last, "floe_spillovers_total")
        )
    });
    eprintln!("whole test: {:?}", t0.elapsed());
}

/// Part 2: hall listeners one by one (the venue's four slots first, then
/// the world relay), then all gone, then a burst from both networks at
/// once. Returns the tallies by relay.
fn fill(
    lab: &Lab,
    floe: &FloeProcess,
    stream: &str,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let venue_room = 2 * VENUE_MAX as usize;
    let mut slowest = Duration::ZERO;
    // One by one: each starts once the one before is counted by its relay
    // and its grant reconciled (floe counts a listener twice, as a grant
    // and in the relay's count, until a poll that started `settle` after
    // the redirect: the conservative side, which would send the next one
    // to the world while a venue slot is free).
    let mut listeners = Vec::new();
    let mut landed = Vec::new();
    for n in 0..venue_room + 3 {
        let mut l = CurlListener::start(stream, hall(100 + n as u8));
        landed.extend(landings(lab, std::slice::from_mut(&mut l), &mut slowest));
        listeners.push(l);
        floe.wait_status(T, "the listener counted, its grant reconciled", |s| {
            let cells = RELAYS.map(|r| cell(s, r, MOUNT));
            cells.iter().all(|c| c["in_flight"] == 0)
                && cells
                    .iter()
                    .map(|c| c["listeners"].as_u64().unwrap_or(0))
                    .sum::<u64>()
                    == n as u64 + 1
        });
    }
    let order: Vec<&str> = landed.iter().map(|(_, r)| r.as_str()).collect();
    assert!(
        order[..venue_room].iter().all(|r| r.starts_with("venue-")),
        "the venue's slots go first: {order:?}"
    );
    assert!(
        order[venue_room..].iter().all(|r| *r == "world-1"),
        "then the hall spills over to the world: {order:?}"
    );
    eprintln!("one by one: slowest from floe's 302 to the relay's 200: {slowest:?}");
    let one_by_one = tally(&landed);
    assert_eq!(one_by_one.get("venue-1"), Some(&VENUE_MAX), "{order:?}");
    assert_eq!(one_by_one.get("venue-2"), Some(&VENUE_MAX), "{order:?}");
    // The relays count them (each listener counted by the relay it got).
    for (name, n) in &one_by_one {
        let r = lab.relays.iter().find(|r| r.name() == name).unwrap();
        r.wait_for_listeners(MOUNT, *n, T);
    }
    for l in &mut listeners {
        assert!(l.is_running(), "{l:?} still connected");
    }
    let during = generation(floe);
    drop(listeners);
    wait_all_room_back(floe, during);

    // A burst from both networks at once: 12 from the hall, 4 from
    // elsewhere, started together; the venue takes exactly its four,
    // nobody from elsewhere gets a venue relay.
    let mut burst: Vec<CurlListener> = (0..HALL_BURST)
        .map(|n| CurlListener::start(stream, hall(150 + n as u8)))
        .chain((0..WORLD_BURST).map(|n| CurlListener::start(stream, world(150 + n as u8))))
        .collect();
    let landed = landings(lab, &mut burst, &mut slowest);
    for (from, r) in &landed {
        if !matches!(from, IpAddr::V4(v) if v.octets()[2] == 1) {
            assert_eq!(r, "world-1", "{from} is not in the hall");
        }
    }
    let by_relay = tally(&landed);
    assert_eq!(
        by_relay.get("venue-1").copied().unwrap_or(0)
            + by_relay.get("venue-2").copied().unwrap_or(0),
        venue_room as u64,
        "the venue's slots all used, no more: {by_relay:?}"
    );
    assert_eq!(
        by_relay.get("world-1").copied(),
        Some((HALL_BURST + WORLD_BURST - venue_room) as u64),
        "{by_relay:?}"
    );
    for (name, n) in &by_relay {
        let r = lab.relays.iter().find(|r| r.name() == name).unwrap();
        r.wait_for_listeners(MOUNT, *n, T);
    }
    // The control: a full relay does refuse a listener floe did not send
    // (so no 403 above means floe sent nobody past the room).
    let direct = curl_once(&lab.relay(0).url(MOUNT), CONTROL.parse().unwrap(), T);
    assert_eq!(
        direct.status, 403,
        "a full venue-1 asked directly: {direct:?}"
    );
    drop(burst);
    eprintln!("with the burst: slowest from floe's 302 to the relay's 200: {slowest:?}");
    (one_by_one, by_relay)
}

/// curl's header dump, as [`CurlListener`] reads it: complete heads only.
#[test]
fn curl_dumps_give_complete_heads_only() {
    let text = "HTTP/1.1 302 Found\r\nLocation: http://127.0.10.1:8000/live.ogg\r\n\r\n\
                HTTP/1.0 200 OK\r\nContent-Type: application/ogg\r\n\r\nHTTP/1.0 4";
    let heads = parse_dump(text);
    assert_eq!(heads.len(), 2);
    assert_eq!(heads[0].status, 302);
    assert_eq!(
        heads[0].location.as_deref(),
        Some("http://127.0.10.1:8000/live.ogg")
    );
    assert_eq!((heads[1].status, heads[1].location.as_deref()), (200, None));
}
