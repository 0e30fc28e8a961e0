//! The config file as written: serde structs mirroring the TOML, with spans
//! on the values that later checks need to point at.
//!
//! Nothing outside `config` sees these types: [`super::load`] turns them into
//! the validated [`super::Config`]. Every key of a section is optional, so a
//! missing section is its `Default`.

use super::duration::Human;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// `[dns]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDns {
    pub listen: Option<Vec<Spanned<String>>>,
    pub zones: Option<Spanned<PathBuf>>,
    pub answers: Option<Spanned<u32>>,
    pub ttl: Option<Human>,
    pub min_ttl: Option<Human>,
    pub when_no_candidate: Option<Spanned<String>>,
    pub before_first_poll: Option<Spanned<String>>,
    pub when_stale: Option<Spanned<String>>,
    pub fallback: Vec<Spanned<String>>,
    pub tcp_idle_timeout: Option<Human>,
    pub tcp_max_connections: Option<u32>,
    pub tcp_max_connections_per_client: Option<Spanned<u32>>,
    pub tcp_max_connection_age: Option<Human>,
    pub rrl_responses_per_second: Option<u32>,
    pub rrl_slip: Option<Spanned<u32>>,
    pub rrl_prefix_v4: Option<Spanned<u8>>,
    pub rrl_prefix_v6: Option<Spanned<u8>>,
    pub rrl_exempt: Option<Vec<Spanned<String>>>,
    pub diagnostic_txt: Option<bool>,
    pub udp_workers: Option<u32>,
    pub ecs: Option<bool>,
    pub ecs_max_prefix_v4: Option<Spanned<u8>>,
    pub ecs_max_prefix_v6: Option<Spanned<u8>>,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Vec<Spanned<String>>>,
    pub public_url: Option<Spanned<String>>,
    pub header_timeout: Option<Human>,
    pub max_connections: Option<u32>,
    pub max_connections_per_client: Option<Spanned<u32>>,
    pub max_connection_age: Option<Human>,
    pub write_timeout: Option<Human>,
    pub diagnostics_from: Option<Vec<Spanned<String>>>,
    pub metrics_per_mount: Option<bool>,
    pub max_header_bytes: Option<Spanned<u32>>,
    pub retry_after: Option<Human>,
    pub workers: Option<u32>,
    pub proxy_protocol_listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub cors_origins: Option<Vec<Spanned<String>>>,
    pub tls_listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub tls_redirect_to_http: Option<bool>,
    pub tls_certificate: Vec<RawTlsCertificate>,
}

/// One `[[http.tls_certificate]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsCertificate {
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

/// `[acme]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAcme {
    pub directory: Option<Spanned<String>>,
    pub contact: Option<Vec<Spanned<String>>>,
    pub names: Option<Vec<Spanned<String>>>,
    pub state_dir: Option<Spanned<PathBuf>>,
    pub challenge: Option<Spanned<String>>,
    pub renew_after: Option<Spanned<f64>>,
    pub retry_min: Option<Spanned<Human>>,
    pub retry_max: Option<Spanned<Human>>,
    pub ca_file: Option<Spanned<PathBuf>>,
}

/// `[poll]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPoll {
    pub interval: Option<Spanned<Human>>,
    pub timeout: Option<Spanned<Human>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub jitter: Option<Spanned<f64>>,
    pub settle: Option<Human>,
    pub grant_ttl: Option<Human>,
    pub stale_after: Option<Human>,
}

/// `[select]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSelect {
    pub reserve: Option<Spanned<f64>>,
    pub unlimited_room: Option<Spanned<u32>>,
    pub seed: Option<u64>,
    pub share: Option<Spanned<f64>>,
    pub grants_per_client: Option<Spanned<u32>>,
    pub client_share: Option<Spanned<f64>>,
    pub client_prefix_v4: Option<Spanned<u8>>,
    pub client_prefix_v6: Option<Spanned<u8>>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Vec<Spanned<String>>>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<PathBuf>>,
}

/// `status = { kind = ... }` of a relay.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawStatus {
    IcecastXml {
        user: String,
        /// The password, or (`password_file`) a file holding it, relative
        /// to the config file.
        password: Option<String>,
        password_file: Option<PathBuf>,
        path: Option<String>,
    },
    IcecastJson {
        path: Option<String>,
    },
    Xslt {
        path: Option<String>,
    },
}

/// One `[[relay]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub https_url: Option<Spanned<String>>,
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    pub status: Spanned<RawStatus>,
    pub weight: Option<Spanned<u32>>,
    pub max_listeners: Option<u32>,
    #[serde(default)]
    pub mount_max_listeners: BTreeMap<String, u32>,
    pub uplink_kbps: Option<u32>,
    #[serde(default)]
    pub drain: bool,
}

/// One `[[stream]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub name: Spanned<String>,
    pub mounts: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub dns: Vec<Spanned<String>>,
    #[serde(default)]
    pub mount_dns: BTreeMap<String, Vec<Spanned<String>>>,
    pub bitrate_kbps: Option<u32>,
}

/// One `[[group]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: Spanned<String>,
    pub relays: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclusive: bool,
}

/// One `[[pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Spanned<String>,
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    pub order: Spanned<Vec<Spanned<String>>>,
}

/// `[peers]`: this instance in the peer exchange.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPeers {
    pub name: Option<Spanned<String>>,
    pub interval: Option<Spanned<Human>>,
}

/// One `[[peer]]`: another instance of the NS set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
}
