//! End-to-end test harness: real Icecast relays, ffmpeg sources, real
//! players, curl and unbound, headless Chromium, loopback ports. Include
//! with `mod support;` from a test file.
//!
//! Everything it starts is killed when its handle drops; readiness is
//! polled with timeouts and a clear panic message; a missing tool panics
//! (naming it, and `tests/run --install-only`), it never skips silently.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod cluster;
pub mod cors_proxy;
pub mod curl;
pub mod dns;
pub mod floe;
pub mod flood;
pub mod icecast;
pub mod net;
pub mod pages;
pub mod pki;
pub mod players;
pub mod procs;
pub mod prom;
pub mod source;
pub mod unbound;

pub use cluster::{TestConfig, runtime, sim_relay};
pub use icecast::{IcecastRelay, Lab, MountSpec, MountStatus, RelaySpec, Slot};
pub use net::{
    Clients, HttpResponse, ListenError, StreamListener, free_port, http_get, http_get_auth,
};
pub use players::{
    Decoded, PlayError, assert_decoded, ffmpeg_decode, ffprobe_codecs, gstreamer_decode,
    mplayer_decode, mpv_decode, vlc_decode, xine_decode,
};
pub use procs::{Proc, have_tool, poll, require_tool};
pub use source::{Codec, Source, SourceOpts};
