//! The demo's embedded default: the three simulated relays, floe's config
//! and the zone it serves, as text in the binary.
//!
//! The config is rendered with the sim relays' real URLs (their ports come
//! from the OS) and the listen addresses given on the command line, then
//! loaded by [`crate::config::load_str`] exactly as `floe serve` loads a
//! file, so the demo exercises the same validation.

use super::sim::{SimRelay, SimRelayBuilder};
use std::net::SocketAddr;

/// The zone floe is authoritative for.
pub const ZONE: &str = "stream.example.org.";
/// The balanced name for the whole stream.
pub const BALANCED_NAME: &str = "live.stream.example.org.";
/// Per-mount balanced names: only relays with room on that mount.
pub const MOUNT_NAMES: [(&str, &str); 2] = [
    ("/live.ogg", "live-ogg.stream.example.org."),
    ("/live.mp3", "live-mp3.stream.example.org."),
];
/// The stream's mounts.
pub const MOUNTS: [&str; 2] = ["/live.ogg", "/live.mp3"];

/// One simulated relay of the demo.
#[derive(Debug, Clone, Copy)]
pub struct RelaySpec {
    /// Relay name (config and status pages).
    pub name: &'static str,
    /// `<max-listeners>` of each mount: small, so filling is visible.
    pub max_listeners: u32,
    /// Its tone's pitch: each relay sounds different.
    pub tone_hz: u32,
    /// What floe's DNS answers for it.
    pub dns_address: &'static str,
}

/// The demo's relays.
pub const RELAYS: [RelaySpec; 3] = [
    RelaySpec {
        name: "relay-1",
        max_listeners: 5,
        tone_hz: 330,
        dns_address: "127.0.0.1",
    },
    RelaySpec {
        name: "relay-2",
        max_listeners: 10,
        tone_hz: 440,
        dns_address: "127.0.0.2",
    },
    RelaySpec {
        name: "relay-3",
        max_listeners: 3,
        tone_hz: 550,
        dns_address: "127.0.0.3",
    },
];

impl RelaySpec {
    /// A builder for this relay on a port from the OS.
    pub fn builder(&self) -> SimRelayBuilder {
        MOUNTS.iter().fold(
            SimRelay::builder(self.name).tone_hz(self.tone_hz),
            |b, m| b.mount(*m, Some(self.max_listeners)),
        )
    }
}

/// The zone file (`zones/stream.example.org.zone`). The balanced names are
/// not in it: floe answers them from the relays' state.
pub const ZONE_FILE: &str = "\
; floe demo: the zone floe serves authoritatively. Balanced names
; (live.stream.example.org. and the per-mount names) are answered by floe
; from the relay state and must not appear here.
$ORIGIN stream.example.org.
$TTL 300
@       60  IN  SOA ns1.stream.example.org. hostmaster.example.org. (
                    2025010101 3600 600 1209600 60 )
@           IN  NS  ns1.stream.example.org.
ns1         IN  A   127.0.0.1
@           IN  A   127.0.0.1
@           IN  TXT \"floe demo: listeners of live.stream.example.org go to relays with room\"
";

/// floe's config for the demo: `relays[i]` is [`RELAYS`]`[i]` running at its
/// URL; `dns` and `http` are the listen addresses.
pub fn config_toml(relays: &[SimRelay], dns: SocketAddr, http: SocketAddr) -> String {
    let mut out = format!(
        "\
# floe demo: the embedded default configuration (written here for reading;
# `floe check --config` this file to validate it).
[dns]
listen = [\"{dns}\"]
zones = \"zones\"
answers = 2
ttl = \"20s\"
min_ttl = \"5s\"

[http]
listen = [\"{http}\"]

[poll]
interval = \"1s\"
timeout = \"500ms\"
rise = 2
fall = 2
settle = \"500ms\"
"
    );
    for (spec, relay) in RELAYS.iter().zip(relays) {
        out.push_str(&format!(
            "
[[relay]]
name = \"{}\"
url = \"{}\"
addresses = [\"{}\"]
status = {{ kind = \"xslt\", path = \"/floe-slots.xsl\" }}
",
            spec.name,
            relay.url(),
            spec.dns_address
        ));
    }
    let mounts = MOUNTS
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mount_dns = MOUNT_NAMES
        .iter()
        .map(|(m, n)| format!("\"{m}\" = [\"{n}\"]"))
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!(
        "
[[stream]]
name = \"live\"
mounts = [{mounts}]
dns = [\"{BALANCED_NAME}\"]
mount_dns = {{ {mount_dns} }}
"
    ));
    out
}
