//! The audio a simulated relay plays: an endless WAV sine tone, paced in
//! real time.
//!
//! WAV needs no encoder: a 44-byte header and raw 16-bit PCM. The header's
//! RIFF and data sizes are `0xFFFFFFFF`, the usual marker of a WAV of unknown
//! length, which ffmpeg (and so mpv and ffplay) read as "play until the
//! connection ends". Players recognise it by its `RIFF....WAVE` magic, not by
//! the URL, so it plays under `/live.ogg` and `/live.mp3` names too.
//!
//! One second of the tone is rendered once per mount ([`Tone`]); with an
//! integer frequency it loops seamlessly, and every chunk a listener receives
//! is a zero-copy slice of it. A listener's memory is the [`ToneBody`]
//! struct, whatever the number of listeners or how long they stay.

use bytes::Bytes;
use std::f64::consts::TAU;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// Samples per second of every simulated stream.
pub const SAMPLE_RATE: u32 = 22_050;
/// Bytes of PCM per second (16-bit mono).
pub const BYTES_PER_SECOND: usize = SAMPLE_RATE as usize * 2;
/// Time between two chunks after the initial burst.
pub const TICK: Duration = Duration::from_millis(100);
/// Bytes per chunk: exactly [`TICK`] of audio, so pacing is real time.
const CHUNK: usize = BYTES_PER_SECOND / 10;
/// Peak amplitude: about -10 dBFS, audible without being harsh.
const AMPLITUDE: f64 = 10_000.0;

/// One mount's audio: the WAV header and one second of a sine tone.
#[derive(Debug, Clone)]
pub struct Tone {
    header: Bytes,
    second: Bytes,
    hz: u32,
}

impl Tone {
    /// Renders a sine tone of `hz` (clamped to 20..=10000 Hz).
    pub fn new(hz: u32) -> Tone {
        let hz = hz.clamp(20, 10_000);
        let mut pcm = Vec::with_capacity(BYTES_PER_SECOND);
        for n in 0..SAMPLE_RATE {
            let phase = TAU * f64::from(hz) * f64::from(n) / f64::from(SAMPLE_RATE);
            // In range by construction: |sin| <= 1, AMPLITUDE < i16::MAX.
            let sample = (phase.sin() * AMPLITUDE).round() as i16;
            pcm.extend_from_slice(&sample.to_le_bytes());
        }
        Tone {
            header: Bytes::from(wav_header().to_vec()),
            second: Bytes::from(pcm),
            hz,
        }
    }

    /// The tone's frequency in Hz.
    pub fn hz(&self) -> u32 {
        self.hz
    }

    /// The stream's bitrate in kbit/s, as a status page reports it.
    pub fn kbps() -> u32 {
        (BYTES_PER_SECOND * 8 / 1000) as u32
    }
}

/// The 44-byte header of a 16-bit mono PCM WAV of unknown length.
pub fn wav_header() -> [u8; 44] {
    let mut h = [0u8; 44];
    let byte_rate = SAMPLE_RATE * 2;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    h
}

/// Where a [`ToneBody`] is in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Burst,
    Live,
}

/// Decides, at every chunk, whether the listener may go on (the source is
/// still connected and the listener was not dropped by a control).
pub trait StillListening: Send + Unpin + 'static {
    /// `false` ends the stream (the connection then closes).
    fn still_listening(&self) -> bool;
}

/// An endless response body: the WAV header, one second of audio at once
/// (like Icecast's burst, so players start at once), then [`TICK`] of audio
/// every [`TICK`]. It ends only when `guard` says so; dropping it (the
/// connection closed) drops `guard`, which is how a listener stops being
/// counted.
pub struct ToneBody<G> {
    tone: Tone,
    stage: Stage,
    offset: usize,
    interval: Interval,
    guard: G,
}

impl<G: StillListening> ToneBody<G> {
    /// A new stream of `tone` for one listener. Needs a tokio runtime (timer).
    pub fn new(tone: Tone, guard: G) -> Self {
        let mut interval = tokio::time::interval_at(Instant::now() + TICK, TICK);
        // A listener that stalls gets no catch-up burst, like a live source.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ToneBody {
            tone,
            stage: Stage::Header,
            offset: 0,
            interval,
            guard,
        }
    }

    /// Polls for the next chunk; `None` when the stream is over.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if !self.guard.still_listening() {
            return Poll::Ready(None);
        }
        match self.stage {
            Stage::Header => {
                self.stage = Stage::Burst;
                Poll::Ready(Some(self.tone.header.clone()))
            }
            Stage::Burst => {
                self.stage = Stage::Live;
                Poll::Ready(Some(self.tone.second.clone()))
            }
            Stage::Live => {
                ready!(self.interval.poll_tick(cx));
                if !self.guard.still_listening() {
                    return Poll::Ready(None);
                }
                let len = self.tone.second.len();
                let end = (self.offset + CHUNK).min(len);
                let chunk = self.tone.second.slice(self.offset..end);
                self.offset = if end == len { 0 } else { end };
                Poll::Ready(Some(chunk))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_describes_endless_mono_pcm() {
        let h = wav_header();
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(
            u32::from_le_bytes([h[24], h[25], h[26], h[27]]),
            SAMPLE_RATE
        );
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes([h[40], h[41], h[42], h[43]]), u32::MAX);
    }

    #[test]
    fn one_second_loops_without_a_click() {
        let t = Tone::new(440);
        assert_eq!(t.second.len(), BYTES_PER_SECOND);
        assert_eq!(BYTES_PER_SECOND % CHUNK, 0);
        // An integer number of periods per second: the last sample is the
        // one before sample 0 of the next second (sin is odd).
        assert_eq!(&t.second[0..2], &0i16.to_le_bytes());
        let sample = |i: usize| i16::from_le_bytes([t.second[2 * i], t.second[2 * i + 1]]);
        assert_eq!(sample(SAMPLE_RATE as usize - 1), -sample(1));
    }

    struct Always;
    impl StillListening for Always {
        fn still_listening(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn paced_in_real_time_after_a_one_second_burst() {
        let mut body = ToneBody::new(Tone::new(330), Always);
        let start = Instant::now();
        let mut total = 0usize;
        // Header + burst come at once.
        for _ in 0..2 {
            let c = std::future::poll_fn(|cx| body.poll_chunk(cx))
                .await
                .expect("chunk");
            total += c.len();
        }
        assert_eq!(total, 44 + BYTES_PER_SECOND);
        assert!(start.elapsed() < TICK, "the burst does not wait");
        for _ in 0..5 {
            let c = std::future::poll_fn(|cx| body.poll_chunk(cx))
                .await
                .expect("chunk");
            assert_eq!(c.len(), CHUNK);
        }
        assert!(
            start.elapsed() >= TICK * 5,
            "one chunk per tick: {:?}",
            start.elapsed()
        );
    }
}
