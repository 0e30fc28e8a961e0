//! Icecast source clients: ffmpeg pushing a generated test signal with
//! HTTP PUT (the command shape from shared/icecast-notes.md).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::procs::{self, Proc};

/// What a source sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Ogg Vorbis sine tone, 44.1 kHz stereo.
    Vorbis,
    /// MP3 sine tone, 44.1 kHz stereo.
    Mp3,
    /// Ogg Theora test pattern (160x120, 10 fps) plus a Vorbis sine tone.
    Theora,
}

impl Codec {
    /// The codec a mount path suggests: `.mp3` MP3, `.ogv` Theora, else Vorbis.
    pub fn for_mount(mount: &str) -> Codec {
        if mount.ends_with(".mp3") {
            Codec::Mp3
        } else if mount.ends_with(".ogv") {
            Codec::Theora
        } else {
            Codec::Vorbis
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Vorbis => "application/ogg",
            Codec::Mp3 => "audio/mpeg",
            Codec::Theora => "video/ogg",
        }
    }

    /// Whether the stream has a video track.
    pub fn has_video(self) -> bool {
        self == Codec::Theora
    }
}

/// Options for a [`Source`].
#[derive(Clone, Debug)]
pub struct SourceOpts {
    pub codec: Codec,
    /// Sine frequency in Hz.
    pub frequency: u32,
    /// Audio bitrate in kbit/s (Theora: the video gets 100 kbit/s on top).
    pub audio_kbps: u32,
    /// `Ice-Name` header.
    pub name: String,
    /// Start ffmpeg again whenever it exits (e.g. the relay restarted).
    pub respawn: bool,
}

impl SourceOpts {
    pub fn new(codec: Codec) -> SourceOpts {
        SourceOpts {
            codec,
            frequency: match codec {
                Codec::Vorbis => 330,
                Codec::Mp3 => 440,
                Codec::Theora => 550,
            },
            audio_kbps: match codec {
                Codec::Theora => 32,
                _ => 64,
            },
            name: "floe test tone".to_string(),
            respawn: true,
        }
    }

    /// The bitrate announced in `Ice-Bitrate` (kbit/s).
    pub fn total_kbps(&self) -> u32 {
        match self.codec {
            Codec::Theora => self.audio_kbps + 100,
            _ => self.audio_kbps,
        }
    }

    fn ffmpeg_args(&self, url: &str) -> Vec<String> {
        let mut a: Vec<String> = [
            "-nostdin",
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let sine_stereo = format!("sine=frequency={}:sample_rate=44100", self.frequency);
        let sine_mono = format!("sine=frequency={}:sample_rate=22050", self.frequency);
        let ab = format!("{}k", self.audio_kbps);
        match self.codec {
            Codec::Vorbis => push(&[
                "-re",
                "-f",
                "lavfi",
                "-i",
                &sine_stereo,
                "-ac",
                "2",
                "-c:a",
                "libvorbis",
                "-b:a",
                &ab,
                "-f",
                "ogg",
            ]),
            Codec::Mp3 => push(&[
                "-re",
                "-f",
                "lavfi",
                "-i",
                &sine_stereo,
                "-ac",
                "2",
                "-c:a",
                "libmp3lame",
                "-b:a",
                &ab,
                "-f",
                "mp3",
            ]),
            Codec::Theora => push(&[
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x120:rate=10",
                "-re",
                "-f",
                "lavfi",
                "-i",
                &sine_mono,
                "-c:v",
                "libtheora",
                "-b:v",
                "100k",
                "-g",
                "10",
                "-c:a",
                "libvorbis",
                "-ac",
                "1",
                "-b:a",
                &ab,
                "-f",
                "ogg",
            ]),
        }
        let headers = format!(
            "Ice-Name: {}\r\nIce-Bitrate: {}\r\nIce-Public: 0\r\n",
            self.name,
            self.total_kbps()
        );
        push(&[
            "-method",
            "PUT",
            "-chunked_post",
            "0",
            "-send_expect_100",
            "1",
            "-auth_type",
            "basic",
            "-content_type",
            self.codec.content_type(),
            "-headers",
            &headers,
            url,
        ]);
        a
    }
}

#[derive(Default)]
struct SourceState {
    pid: Option<u32>,
    spawns: u32,
    last_exit: Option<String>,
}

/// An ffmpeg source process feeding one mount. With `respawn` (the default)
/// a supervisor thread starts it again whenever it exits, so it survives
/// relay restarts. Killed on drop.
pub struct Source {
    mount: String,
    target: String,
    codec: Codec,
    log_path: PathBuf,
    state: Arc<Mutex<SourceState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Source {
    /// Feed `mount` on the relay at `127.0.0.1:port` (user `source`).
    pub fn start(port: u16, source_password: &str, mount: &str, opts: SourceOpts) -> Source {
        Source::start_at("127.0.0.1", port, source_password, mount, opts)
    }

    /// Feed `mount` on the relay at `host:port` (user `source`).
    pub fn start_at(
        host: &str,
        port: u16,
        source_password: &str,
        mount: &str,
        opts: SourceOpts,
    ) -> Source {
        let ffmpeg = procs::require_tool("ffmpeg");
        assert!(mount.starts_with('/'), "mount {mount:?} must start with /");
        let url = format!("http://source:{source_password}@{host}:{port}{mount}");
        let target = format!("http://{host}:{port}{mount}");
        let dir = procs::temp_dir("floe-source-");
        let log_path = dir.path().join("ffmpeg.log");
        let args = opts.ffmpeg_args(&url);
        let state = Arc::new(Mutex::new(SourceState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, log_path, target) = (
                state.clone(),
                stop.clone(),
                log_path.clone(),
                target.clone(),
            );
            let respawn = opts.respawn;
            std::thread::Builder::new()
                .name(format!("source {target}"))
                .spawn(move || supervise(ffmpeg, args, respawn, &target, &log_path, &state, &stop))
                .expect("spawn source supervisor thread")
        };
        // Wait for the first spawn so that pid() is meaningful at once.
        procs::poll(Duration::from_secs(5), Duration::from_millis(5), || {
            let s = state.lock().unwrap();
            (s.spawns > 0 || s.last_exit.is_some()).then_some(())
        });
        Source {
            mount: mount.to_string(),
            target,
            codec: opts.codec,
            log_path,
            state,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The mount it feeds.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// `http://HOST:PORT/mount` (no credentials).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// pid of the running ffmpeg, if one is running.
    pub fn pid(&self) -> Option<u32> {
        self.state.lock().unwrap().pid
    }

    /// How many times ffmpeg was started.
    pub fn spawns(&self) -> u32 {
        self.state.lock().unwrap().spawns
    }

    /// The exit status of the last ffmpeg that exited.
    pub fn last_exit(&self) -> Option<String> {
        self.state.lock().unwrap().last_exit.clone()
    }

    /// ffmpeg's log (all runs; last 4 KiB).
    pub fn log(&self) -> String {
        procs::file_tail(&self.log_path, 4096)
    }

    /// Disconnect the source (kill ffmpeg, no respawn). Same as drop.
    pub fn stop(self) {}
}

fn supervise(
    ffmpeg: PathBuf,
    args: Vec<String>,
    respawn: bool,
    target: &str,
    log_path: &std::path::Path,
    state: &Mutex<SourceState>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let log = OpenOptions::new().create(true).append(true).open(log_path);
        let mut log = match log {
            Ok(f) => f,
            Err(e) => {
                state.lock().unwrap().last_exit = Some(format!("cannot open log: {e}"));
                return;
            }
        };
        let _ = writeln!(log, "--- ffmpeg source for {target}");
        let mut cmd = Command::new(&ffmpeg);
        cmd.args(&args).stdin(Stdio::null());
        match (log.try_clone(), log.try_clone()) {
            (Ok(out), Ok(err)) => {
                cmd.stdout(out).stderr(err);
            }
            _ => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let mut proc = match Proc::spawn(format!("ffmpeg source {target}"), &mut cmd) {
            Ok(p) => p,
            Err(e) => {
                state.lock().unwrap().last_exit = Some(format!("spawn failed: {e}"));
                return;
            }
        };
        {
            let mut s = state.lock().unwrap();
            s.pid = Some(proc.pid());
            s.spawns += 1;
        }
        let status = loop {
            if stop.load(Ordering::Relaxed) {
                break proc.kill();
            }
            if let Some(status) = proc.wait_timeout(Duration::from_millis(50)) {
                break Some(status);
            }
        };
        {
            let mut s = state.lock().unwrap();
            s.pid = None;
            s.last_exit = Some(format!("{status:?}"));
        }
        if !respawn {
            return;
        }
        // Back off a little so a dead relay does not make us spin.
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source({:?} -> {})", self.codec, self.target)
    }
}
