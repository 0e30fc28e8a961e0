//! floe: a load-aware DNS + HTTP balancer for Icecast2 relays.
//!
//! The major components are:
//! - `config`: the TOML model, parsed once into typed, validated values.
//! - `zones`: RFC 1035 zone files loaded with hickory's parser.
//! - `status`: one pure parser per Icecast status format.
//! - `diagnostic`: file:line:col errors and warnings for operator input.

pub mod diagnostic;
pub mod status;
pub mod zones;
