//! `floe demo` as a person runs it: the real binary on free ports, its
//! printed lines, a redirect to a simulated relay, audio a real decoder
//! plays, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the demo if the test fails before stopping it.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["demo", "--http", "127.0.0.1:0", "--dns", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("floe demo starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first printed line (seen before or arriving within `timeout`)
    /// for which `f` gives a value.
    fn find<T>(&mut self, timeout: Duration, f: impl Fn(&str) -> Option<T>) -> Option<T> {
        if let Some(v) = self.seen.iter().find_map(|l| f(l)) {
            return Some(v);
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.lines.recv_timeout(left).ok()?;
            let v = f(&line);
            self.seen.push(line);
            if v.is_some() {
                return v;
            }
        }
        None
    }
}

/// A response head, the first bytes of its body, and the open connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    _conn: TcpStream,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET url` over a plain socket; reads the head and up to `body_bytes` of
/// the body (a stream is endless). The connection stays open with the
/// answer.
fn get(url: &str, body_bytes: usize) -> std::io::Result<Answer> {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(authority)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let path = if path.is_empty() { "/" } else { path };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the end of the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < body_bytes {
        match s.read(&mut chunk)? {
            0 => break,
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Ok(Answer {
        status,
        headers,
        body,
        _conn: s,
    })
}

/// Seconds of audio in a WAV file, from its `fmt ` and `data` chunks and
/// the file's real length (a writer cut short may leave the sizes unset).
fn wav_seconds(path: &Path) -> f64 {
    let Ok(bytes) = std::fs::read(path) else {
        return 0.0;
    };
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return 0.0;
    }
    let mut pos = 12;
    let mut byte_rate = 0u32;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        if id == b"fmt " && pos + 20 <= bytes.len() {
            byte_rate = u32::from_le_bytes([
                bytes[pos + 16],
                bytes[pos + 17],
                bytes[pos + 18],
                bytes[pos + 19],
            ]);
        }
        if id == b"data" {
            if byte_rate == 0 {
                return 0.0;
            }
            return (bytes.len() - (pos + 8)) as f64 / f64::from(byte_rate);
        }
        pos += 8 + size + (size & 1);
    }
    0.0
}

#[test]
fn floe_demo_redirects_to_a_simulated_relay_that_plays() {
    let mut demo = Demo::start();
    let wait = Duration::from_secs(20);

    // The printed lines carry the real ports, never the :0 asked for.
    let base = demo
        .find(wait, |l| {
            let url = l
                .trim()
                .strip_prefix("curl -sI ")?
                .split_whitespace()
                .next()?;
            Some(url.strip_suffix("/live.ogg")?.to_string())
        })
        .expect("the demo prints `curl -sI http://ADDR/live.ogg`");
    assert!(!base.ends_with(":0"), "{base}");
    let dns_port: u16 = demo
        .find(wait, |l| {
            l.trim()
                .strip_prefix("dig @127.0.0.1 -p ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("the demo prints dig lines");
    assert_ne!(dns_port, 0);
    let relays: Vec<String> = demo
        .seen
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next().filter(|n| n.starts_with("relay-"))?;
            w.next()
                .filter(|u| u.starts_with("http://"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(relays.len(), 3, "three relays listed: {:?}", demo.seen);

    // Ready when /healthz says the first poll round is done.
    let deadline = Instant::now() + wait;
    while !get(&format!("{base}/healthz"), 0).is_ok_and(|a| a.status == 200) {
        assert!(Instant::now() < deadline, "/healthz never became 200");
        std::thread::sleep(Duration::from_millis(50));
    }

    // floe redirects to a relay with room ...
    let redirect = get(&format!("{base}/live.ogg"), 0).expect("GET /live.ogg");
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").expect("Location").to_string();
    assert!(
        relays.iter().any(|r| location == format!("{r}/live.ogg")),
        "{location} is a sim relay's /live.ogg"
    );

    // ... which streams a WAV tone and counts the listener while connected.
    let stream = get(&location, 44).expect("GET the relay");
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("audio/wav"));
    assert_eq!(&stream.body[0..4], b"RIFF");
    assert_eq!(&stream.body[8..16], b"WAVEfmt ");
    let counted = demo.find(wait, |l| {
        (l.starts_with('[') && l.contains(" ogg 1/")).then_some(())
    });
    assert!(
        counted.is_some(),
        "the live line shows the listener: {:?}",
        demo.seen.last()
    );

    // A real decoder plays it through floe's URL.
    if Path::new("/usr/bin/ffmpeg").exists() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.wav");
        let mut ffmpeg = Command::new("/usr/bin/ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-t",
                "2",
                "-i",
                &format!("{base}/live.ogg"),
                "-f",
                "wav",
                "-y",
            ])
            .arg(&out)
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ffmpeg.try_wait().expect("wait ffmpeg").is_none() {
            if Instant::now() > deadline {
                let _ = ffmpeg.kill();
                let _ = ffmpeg.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let seconds = wav_seconds(&out);
        assert!(
            seconds >= 1.0,
            "ffmpeg decoded {seconds:.2} s through {base}/live.ogg"
        );
    } else {
        eprintln!("ffmpeg not installed: decoding not checked");
    }

    // SIGTERM stops it cleanly.
    let pid = demo.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = demo.child.try_wait().expect("wait demo") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "floe demo did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    drop(stream);
}
