//! Real players, judged by what they decoded (never by exit code): each
//! writes PCM to a WAV file (GStreamer: reports buffer timestamps), and the
//! decoded duration is measured from that. Every run has a hard timeout and
//! its process is killed when it ends.
//!
//! Commands are those of shared/icecast-notes.md ("Players").

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::procs::{self, Proc};

/// What a player decoded.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub player: &'static str,
    pub url: String,
    /// Seconds of decoded audio.
    pub audio_secs: f64,
    /// Decoded video frames (ffmpeg and GStreamer; 0 for the others).
    pub video_frames: u64,
    /// Wall-clock time of the run.
    pub wall: Duration,
    /// Exit status (None when it had to be killed).
    pub exit: Option<ExitStatus>,
    /// The harness stopped it (signal) because it had decoded enough.
    pub stopped: bool,
    /// It hit the hard timeout and was killed.
    pub timed_out: bool,
    /// End of its log.
    pub log_tail: String,
}

/// The player's run, which must have decoded at least `min_secs` of
/// audio: panics with the player's log otherwise. Prints what it decoded.
pub fn assert_decoded(run: &Result<Decoded, PlayError>, min_secs: f64) -> &Decoded {
    let d = run
        .as_ref()
        .unwrap_or_else(|e| panic!("player failed: {e}"));
    eprintln!(
        "{} decoded {:.2} s of audio, {} video frames via {} in {:?} (exit {:?}, stopped {})",
        d.player, d.audio_secs, d.video_frames, d.url, d.wall, d.exit, d.stopped
    );
    assert!(
        d.audio_secs >= min_secs,
        "{} decoded only {:.2} s: {}",
        d.player,
        d.audio_secs,
        d.log_tail
    );
    d
}

/// A player decoded nothing.
#[derive(Clone, Debug)]
pub struct PlayError {
    pub player: &'static str,
    pub url: String,
    pub reason: String,
    pub exit: Option<ExitStatus>,
    pub log_tail: String,
}

impl std::fmt::Display for PlayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} decoded nothing from {}: {} (exit {:?}); log: {}",
            self.player, self.url, self.reason, self.exit, self.log_tail
        )
    }
}

impl std::error::Error for PlayError {}

/// Seconds of audio in a WAV file, from its `fmt ` byte rate and the size of
/// its `data` chunk. Players killed mid-way leave a placeholder size in the
/// header: then the bytes actually in the file count.
pub fn wav_seconds(path: &Path) -> Option<f64> {
    let mut file = fs::File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut head = vec![0u8; 64 * 1024];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    head.truncate(n);
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(head.get(i..i + 4)?.try_into().ok()?))
    };
    let mut pos = 12usize;
    let mut byte_rate: Option<u32> = None;
    while pos + 8 <= head.len() {
        let id = &head[pos..pos + 4];
        let size = u32_at(pos + 4)?;
        let body = pos + 8;
        if id == b"fmt " {
            byte_rate = u32_at(body + 8);
        } else if id == b"data" {
            let rate = f64::from(byte_rate.filter(|r| *r > 0)?);
            let avail = file_len.saturating_sub(body as u64);
            let bytes = if size == 0 || u64::from(size) > avail {
                avail
            } else {
                u64::from(size)
            };
            return Some(bytes as f64 / rate);
        }
        pos = body + size as usize + (size as usize & 1);
    }
    None
}

/// How a player run ended.
struct Run {
    exit: Option<ExitStatus>,
    stopped: bool,
    timed_out: bool,
    wall: Duration,
}

/// Run a player (stderr, and stdout when `stdout_to_log`, to `log`) until it
/// exits, until `done` says it decoded enough (then `stop_signal`, then
/// SIGKILL after a grace period), or until the hard timeout.
fn run(
    player: &'static str,
    mut cmd: Command,
    log: &Path,
    hard_timeout: Duration,
    stop_signal: &str,
    stdout_to_log: bool,
    mut done: impl FnMut() -> bool,
) -> Result<Run, PlayError> {
    let t0 = Instant::now();
    let log_file = fs::File::create(log).expect("create player log");
    if stdout_to_log {
        cmd.stdout(log_file.try_clone().expect("dup log"));
    }
    cmd.stderr(log_file).stdin(Stdio::null());
    let mut proc = Proc::spawn_group(player, &mut cmd).map_err(|e| PlayError {
        player,
        url: String::new(),
        reason: format!("spawn failed: {e}"),
        exit: None,
        log_tail: String::new(),
    })?;
    let deadline = t0 + hard_timeout;
    let mut stopped = false;
    let mut timed_out = false;
    let exit = loop {
        if let Some(status) = proc.wait_timeout(Duration::from_millis(50)) {
            break Some(status);
        }
        if done() {
            stopped = true;
            break proc.stop_with(stop_signal, Duration::from_secs(3));
        }
        if Instant::now() >= deadline {
            timed_out = true;
            proc.kill();
            break None;
        }
    };
    Ok(Run {
        exit,
        stopped,
        timed_out,
        wall: t0.elapsed(),
    })
}

/// Hard timeout for a run that should decode `secs` seconds.
fn hard_timeout(secs: f64) -> Duration {
    Duration::from_secs_f64(secs * 2.0 + 20.0)
}

fn finish(
    player: &'static str,
    url: &str,
    run: Run,
    audio_secs: f64,
    video_frames: u64,
    log: &Path,
) -> Result<Decoded, PlayError> {
    let log_tail = procs::file_tail(log, 2048);
    if audio_secs <= 0.0 && video_frames == 0 {
        return Err(PlayError {
            player,
            url: url.to_string(),
            reason: if run.timed_out {
                format!("hard timeout after {:?}", run.wall)
            } else {
                "no audio or video decoded".to_string()
            },
            exit: run.exit,
            log_tail,
        });
    }
    Ok(Decoded {
        player,
        url: url.to_string(),
        audio_secs,
        video_frames,
        wall: run.wall,
        exit: run.exit,
        stopped: run.stopped,
        timed_out: run.timed_out,
        log_tail,
    })
}

fn secs_arg(secs: f64) -> String {
    format!("{secs:.3}")
}

/// A temp dir writable by everyone (players run as `nobody` write there).
fn player_dir(player: &str) -> tempfile::TempDir {
    let dir = procs::temp_dir(&format!("floe-{player}-"));
    procs::set_mode(dir.path(), 0o777);
    dir
}

fn last_progress_frame(progress: &Path) -> u64 {
    fs::read_to_string(progress)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// `ffmpeg -t SECS -i URL`: audio to a WAV file, video (if any) decoded to
/// `-f null`; frames counted from `-progress`. Follows redirects.
pub fn ffmpeg_decode(url: &str, secs: f64) -> Result<Decoded, PlayError> {
    let ffmpeg = procs::require_tool("ffmpeg");
    let dir = player_dir("ffmpeg");
    let wav = dir.path().join("out.wav");
    let progress = dir.path().join("progress.txt");
    let log = dir.path().join("log.txt");
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "warning",
    ])
    .arg("-progress")
    .arg(&progress)
    .args(["-rw_timeout", "10000000", "-t", &secs_arg(secs), "-i", url])
    .args(["-map", "0:a:0?", "-f", "wav", "-y"])
    .arg(&wav)
    .args(["-map", "0:v:0?", "-f", "null", "-"]);
    let run = run("ffmpeg", cmd, &log, hard_timeout(secs), "INT", true, || {
        false
    })?;
    let audio = wav_seconds(&wav).unwrap_or(0.0);
    let frames = last_progress_frame(&progress);
    finish("ffmpeg", url, run, audio, frames, &log)
}

/// Codec names of the streams `ffprobe` finds (e.g. `["theora", "vorbis"]`).
pub fn ffprobe_codecs(url: &str) -> Result<Vec<String>, PlayError> {
    let ffprobe = procs::require_tool("ffprobe");
    let dir = player_dir("ffprobe");
    let log = dir.path().join("log.txt");
    let out = dir.path().join("out.txt");
    let mut cmd = Command::new(ffprobe);
    cmd.args(["-v", "error", "-rw_timeout", "10000000"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", url])
        .stdout(fs::File::create(&out).expect("create ffprobe out"));
    let run = run(
        "ffprobe",
        cmd,
        &log,
        hard_timeout(5.0),
        "INT",
        false,
        || false,
    )?;
    let codecs: Vec<String> = fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if codecs.is_empty() {
        return Err(PlayError {
            player: "ffprobe",
            url: url.to_string(),
            reason: "no streams found".to_string(),
            exit: run.exit,
            log_tail: procs::file_tail(&log, 2048),
        });
    }
    Ok(codecs)
}

/// `mpv --ao=pcm --length=SECS URL` (no video output). Follows redirects
/// and playlists.
pub fn mpv_decode(url: &str, secs: f64) -> Result<Decoded, PlayError> {
    let mpv = procs::require_tool("mpv");
    let dir = player_dir("mpv");
    let wav = dir.path().join("out.wav");
    let log = dir.path().join("log.txt");
    let mut cmd = Command::new(mpv);
    cmd.args(["--no-config", "--ytdl=no", "--vo=null", "--ao=pcm"])
        .arg(format!("--ao-pcm-file={}", wav.display()))
        .arg(format!("--length={}", secs_arg(secs)))
        .arg("--network-timeout=10")
        .arg(url)
        .env("HOME", dir.path());
    let run = run("mpv", cmd, &log, hard_timeout(secs), "INT", true, || false)?;
    let audio = wav_seconds(&wav).unwrap_or(0.0);
    finish("mpv", url, run, audio, 0, &log)
}

/// Decoded (audio seconds, video seconds, video frames) from `gst-launch -v`
/// output: the pts span of the `chain` lines of the audio (`abin`) and
/// video (`vbin`) fakesinks.
pub fn gst_decoded(log: &str) -> (f64, f64, u64) {
    fn clock(s: &str) -> Option<f64> {
        // 0:00:01.592018140
        let mut parts = s.trim().split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let sec: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + sec)
    }
    fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
        let start = line.find(name)? + name.len();
        let rest = &line[start..];
        Some(&rest[..rest.find(',')?])
    }
    let mut spans = [(f64::MAX, 0f64, 0u64); 2]; // (min pts, max end, count)
    for line in log.lines() {
        if !line.contains("last-message = chain") {
            continue;
        }
        let which = if line.contains(":abin/") {
            0
        } else if line.contains(":vbin/") {
            1
        } else {
            continue;
        };
        let Some(pts) = field(line, "pts: ").and_then(clock) else {
            continue;
        };
        let dur = field(line, "duration: ").and_then(clock).unwrap_or(0.0);
        let s = &mut spans[which];
        s.0 = s.0.min(pts);
        s.1 = s.1.max(pts + dur);
        s.2 += 1;
    }
    let span = |s: (f64, f64, u64)| if s.2 == 0 { 0.0 } else { s.1 - s.0 };
    (span(spans[0]), span(spans[1]), spans[1].2)
}

/// GStreamer `playbin` with fakesinks (`sync=true`, so in real time),
/// stopped with SIGINT once `secs` of audio (or video) were decoded. No
/// `-e`: a live stream never sends EOS.
pub fn gstreamer_decode(url: &str, secs: f64) -> Result<Decoded, PlayError> {
    let gst = procs::require_tool("gst-launch-1.0");
    let dir = player_dir("gst");
    let log = dir.path().join("log.txt");
    let mut cmd = Command::new(gst);
    cmd.args(["-v", "playbin"])
        .arg(format!("uri={url}"))
        .arg("video-sink=fakesink sync=true silent=false")
        .arg("audio-sink=fakesink sync=true silent=false");
    // HOME is left alone: a fresh one would mean rebuilding GStreamer's
    // plugin registry cache (seconds) on every run.
    let log_path = log.clone();
    let mut last_check = Instant::now();
    let run = run(
        "gstreamer",
        cmd,
        &log,
        hard_timeout(secs),
        "INT",
        true,
        || {
            if last_check.elapsed() < Duration::from_millis(200) {
                return false;
            }
            last_check = Instant::now();
            let (a, v, _) = gst_decoded(&fs::read_to_string(&log_path).unwrap_or_default());
            a >= secs || v >= secs
        },
    )?;
    let (audio, _video, frames) = gst_decoded(&fs::read_to_string(&log).unwrap_or_default());
    let mut result = finish("gstreamer", url, run, audio, frames, &log);
    if let Ok(d) = &mut result {
        // The log is mostly chain lines; show the rest.
        d.log_tail = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("last-message = chain"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    result
}

/// Run `cmd` as `nobody` when we are root (VLC refuses root).
fn as_unprivileged(program: PathBuf) -> Command {
    if procs::is_root() {
        let setpriv = procs::require_tool("setpriv");
        let mut cmd = Command::new(setpriv);
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// VLC (`cvlc`, as `nobody` when root) writing WAV via the afile output.
/// VLC 3.0.24 cannot play Icecast Ogg joined mid-stream: use MP3 mounts.
pub fn vlc_decode(url: &str, secs: f64) -> Result<Decoded, PlayError> {
    let cvlc = procs::require_tool("cvlc");
    let dir = player_dir("vlc");
    let wav = dir.path().join("out.wav");
    let log = dir.path().join("log.txt");
    let mut cmd = as_unprivileged(cvlc);
    cmd.args(["--no-video", "--aout=afile"])
        .arg(format!("--audiofile-file={}", wav.display()))
        .arg("--audiofile-wav")
        .arg(format!("--run-time={}", secs.ceil()))
        .args(["--play-and-exit", url, "vlc://quit"])
        .env("HOME", dir.path());
    let run = run("vlc", cmd, &log, hard_timeout(secs), "INT", true, || false)?;
    let audio = wav_seconds(&wav).unwrap_or(0.0);
    finish("vlc", url, run, audio, 0, &log)
}

/// MPlayer writing WAV (`-ao pcm`), stopped by SIGINT once `secs` were
/// decoded. Panics if `mplayer` is not installed (tests/run installs it).
pub fn mplayer_decode(url: &str, secs: f64) -> Result<Decoded, PlayError> {
    let mplayer = procs::require_tool("mplayer");
    let dir = player_dir("mplayer");
    let wav = dir.path().join("out.wav");
    let log = dir.path().join("log.txt");
    let mut cmd = Command::new(mplayer);
    // -nocache: its default cache waits for 20 % of 320 KiB before playing,
    // which takes 25 s with a young Vorbis sine source (~2 kB/s).
    cmd.args([
        "-nolirc",
        "-noconsolecontrols",
        "-nocache",
        "-vo",
        "null",
        "-ao",
    ])
    .arg(format!("pcm:file={}", wav.display()))
    .arg(url)
    .env("HOME", dir.path());
    let wav_path = wav.clone();
    let run = run(
        "mplayer",
        cmd,
        &log,
        hard_timeout(secs),
        "INT",
        true,
        || wav_seconds(&wav_path).unwrap_or(0.0) >= secs,
    )?;
    let audio = wav_seconds(&wav).unwrap_or(0.0);
    finish("mplayer", url, run, audio, 0, &log)
}

/// xine (`aaxine`, text-mode UI, writing `xine-out.wav` in its cwd),
/// stopped once `secs` were decoded (it ignores SIGINT without a terminal,
/// so it gets SIGKILL after a grace period). Panics if `aaxine` is not
/// installed (tests/run installs it).
pub fn xine_decode(url: &str, secs: f64) -> Result<Decoded, PlayError> {
    let aaxine = procs::require_tool("aaxine");
    let dir = player_dir("xine");
    let wav = dir.path().join("xine-out.wav");
    let log = dir.path().join("log.txt");
    let mut cmd = Command::new(aaxine);
    cmd.args([
        "-driver",
        "stdout",
        "-kbddriver",
        "stdin",
        "-A",
        "file",
        "-N",
    ])
    .arg(url)
    .current_dir(dir.path())
    .env("HOME", dir.path())
    // The aalib picture goes to stdout: drop it.
    .stdout(Stdio::null());
    let wav_path = wav.clone();
    let run = run("xine", cmd, &log, hard_timeout(secs), "INT", false, || {
        wav_seconds(&wav_path).unwrap_or(0.0) >= secs
    })?;
    let audio = wav_seconds(&wav).unwrap_or(0.0);
    finish("xine", url, run, audio, 0, &log)
}
