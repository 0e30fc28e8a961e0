//! The usual small cluster of the integration tests: simulated relays (in
//! this process, on a tokio runtime) and a floe config for them, written
//! once here instead of in every test file.
//!
//! [`TestConfig`] starts from what most tests want (loopback on ports from
//! the OS, polls every 300 ms, one stream `live` with `/live.ogg` and
//! `/live.mp3` behind `live.stream.example.org.`); a test changes only what
//! its subject needs, so the config shows what the test is about.

use floe::demo::sim::SimRelay;

/// A runtime for simulated relays (two worker threads); keep its `enter()`
/// guard alive while they run.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A simulated relay carrying `/live.ogg` and `/live.mp3` with these
/// listener limits (`None`: unlimited).
pub fn sim_relay(name: &str, ogg: Option<u32>, mp3: Option<u32>) -> SimRelay {
    SimRelay::builder(name)
        .mount("/live.ogg", ogg)
        .mount("/live.mp3", mp3)
        .start()
        .expect("sim relay")
}

/// A floe config under construction. Sections keep their keys in the order
/// set; setting a key again replaces its value.
#[derive(Debug, Clone)]
pub struct TestConfig {
    sections: Vec<(&'static str, Vec<(String, String)>)>,
    /// Lines added to the `[[stream]]` table.
    stream: Vec<String>,
    relays: Vec<String>,
    /// Tables written as they are, after the relays (`[[group]]`, ...).
    tables: Vec<String>,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    /// The defaults: DNS and HTTP (two workers) on loopback, zones from
    /// `zones` (the example zone the harness copies), polls every 300 ms
    /// with a 500 ms timeout, rise and fall 1, and the stream `live`.
    pub fn new() -> TestConfig {
        let mut c = TestConfig {
            sections: ["dns", "http", "select", "poll", "admin"]
                .into_iter()
                .map(|s| (s, Vec::new()))
                .collect(),
            stream: vec![
                "name = \"live\"".into(),
                "mounts = [\"/live.ogg\", \"/live.mp3\"]".into(),
                "dns = [\"live.stream.example.org.\"]".into(),
            ],
            relays: Vec::new(),
            tables: Vec::new(),
        };
        c = c
            .set("dns", "listen", "[\"127.0.0.1:0\"]")
            .set("dns", "zones", "\"zones\"")
            .set("http", "listen", "[\"127.0.0.1:0\"]")
            .set("http", "workers", "2")
            .set("poll", "interval", "\"300ms\"")
            .set("poll", "timeout", "\"500ms\"")
            .set("poll", "rise", "1")
            .set("poll", "fall", "1");
        c
    }

    /// `key = value` (TOML, as written) in `[section]`.
    pub fn set(mut self, section: &'static str, key: &str, value: &str) -> TestConfig {
        let keys = match self.sections.iter_mut().find(|(s, _)| *s == section) {
            Some((_, keys)) => keys,
            None => {
                self.sections.push((section, Vec::new()));
                &mut self.sections.last_mut().unwrap().1
            }
        };
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_string(),
            None => keys.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// Every `key = value` line of `lines` (TOML) in `[section]`.
    pub fn lines(mut self, section: &'static str, lines: &str) -> TestConfig {
        for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not a key = value line: {line:?}"));
            self = self.set(section, key.trim(), value.trim());
        }
        self
    }

    /// A line for the `[[stream]]` table (e.g. `mount_dns = {...}`).
    pub fn stream(mut self, line: &str) -> TestConfig {
        self.stream.push(line.to_string());
        self
    }

    /// Leaves the stream without balanced DNS names.
    pub fn without_stream_dns(mut self) -> TestConfig {
        self.stream.retain(|l| !l.starts_with("dns = "));
        self
    }

    /// `relay`, polled with the `xslt` format, answered in DNS as
    /// 127.0.0.N (N = its position, from 1), with `extra` lines (`weight =
    /// 2`, `drain = true`) in its table.
    pub fn relay(mut self, relay: &SimRelay, extra: &str) -> TestConfig {
        let n = self.relays.len() + 1;
        self.relays.push(format!(
            "[[relay]]\nname = \"{}\"\nurl = \"{}\"\naddresses = [\"127.0.0.{n}\"]\nstatus = {{ kind = \"xslt\" }}\n{extra}\n",
            relay.name(),
            relay.url(),
        ));
        self
    }

    /// Each of `relays`, as [`TestConfig::relay`] without extra lines.
    pub fn relays(self, relays: &[&SimRelay]) -> TestConfig {
        relays.iter().fold(self, |c, r| c.relay(r, ""))
    }

    /// TOML tables written as they are after the relays, e.g. a
    /// `[[group]]` naming them.
    pub fn table(mut self, toml: &str) -> TestConfig {
        self.tables.push(toml.to_string());
        self
    }

    /// The config text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (section, keys) in self.sections.iter().filter(|(_, k)| !k.is_empty()) {
            out += &format!("[{section}]\n");
            for (k, v) in keys {
                out += &format!("{k} = {v}\n");
            }
        }
        out += "[[stream]]\n";
        for line in &self.stream {
            out += &format!("{line}\n");
        }
        for r in self.relays.iter().chain(&self.tables) {
            out += r;
            out += "\n";
        }
        out
    }
}
