//! floe: a load-aware DNS + HTTP balancer for Icecast2 relays.
//!
//! floe polls every relay's Icecast status, folds the results into an
//! immutable [`snapshot::Snapshot`], and answers DNS queries and HTTP
//! requests from the current snapshot only, through one decision
//! ([`select::decide`]). The major components, lowest layer first (see
//! `docs/architecture.md`; `tests/tidy.rs` keeps the layers):
//!
//! - [`ids`]: typed relay, mount and stream ids and the tables they index.
//! - [`draw`]: the weighted draw (running sums, binary search).
//! - [`diagnostic`]: file:line:col messages for config and zone errors.
//! - [`shutdown`]: the shutdown signal every task watches.
//! - [`clients`]: per-client budgets of grants in a fixed-size table.
//! - [`networks`]: longest-prefix match of client addresses (listener pools).
//! - [`challenges`]: the ACME challenges live now, which the doors answer.
//! - [`icecast`]: one pure parser per Icecast status format (a relay's status).
//! - [`health`]: the up/full/down state machine with rise/fall; typed poll failures.
//! - [`grants`]: lock-free in-flight grant counters per relay and mount.
//! - [`shares`]: how several instances split free slots by their demand.
//! - [`tls`]: TLS certificates of the HTTP door (PEM files, SNI choice).
//! - [`issued`]: certificates floe obtained itself and each name's order state.
//! - [`zones`]: RFC 1035 zone files loaded with hickory's parser.
//! - [`config`]: the TOML model, parsed once into typed, validated values.
//! - [`snapshot`]: topology (from config) + dynamic state (from polls),
//!   published through `arc-swap`.
//! - [`select`]: the one decision both doors and every report use.
//! - [`poll`]: relay pollers and the snapshot builder ([`poll::Engine`]).
//! - [`acme`]: certificates obtained and renewed from an ACME CA.
//! - [`peers`]: the peer exchange task (demand published, peers fetched, shares to the engine).
//! - [`dns`]: the DNS front door (authoritative zones, balanced names).
//! - [`http`]: the HTTP front door (302 redirects, playlists, status).
//! - [`report`]: `/status.json` and explanations, from one snapshot.
//! - [`metrics`]: every Prometheus metric, defined in one place.
//! - [`history`]: the last minutes, sampled for the status page's charts.
//! - [`serve`]: wires engine and front doors into a running instance.
//! - [`reload`]: reloads on SIGHUP and on a changed config or zone file.
//! - [`admin`]: the authenticated endpoint that drains relays at runtime.
//! - [`demo`]: `floe demo` and the simulated Icecast relays tests reuse.

pub mod acme;
pub mod admin;
pub mod challenges;
pub mod clients;
pub mod config;
pub mod demo;
pub mod diagnostic;
pub mod dns;
pub mod draw;
pub mod grants;
pub mod health;
pub mod history;
pub mod http;
pub mod icecast;
pub mod ids;
pub mod issued;
pub mod metrics;
pub mod networks;
pub mod peers;
pub mod poll;
pub mod reload;
pub mod report;
pub mod select;
pub mod serve;
pub mod shares;
pub mod shutdown;
pub mod snapshot;
pub mod tls;
pub mod zones;
