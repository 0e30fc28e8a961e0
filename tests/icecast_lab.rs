//! Smoke test of the end-to-end harness itself (tests/support): real
//! Icecast relays, ffmpeg sources, listeners and players.

mod support;

use std::time::{Duration, Instant};

use support::{
    Clients, Codec, IcecastRelay, Lab, MountSpec, RelaySpec, Slot, StreamListener, assert_decoded,
    ffmpeg_decode, ffprobe_codecs, gstreamer_decode, mpv_decode, vlc_decode,
};

const T: Duration = Duration::from_secs(10);

fn slot(mount: &str, listeners: u64, max: Option<u64>) -> Slot {
    Slot {
        mount: mount.to_string(),
        listeners,
        max_listeners: max,
        free: max.map(|m| m.saturating_sub(listeners)),
    }
}

fn connect_all(url: &str, n: usize) -> Vec<StreamListener> {
    StreamListener::connect_many(url, n, false, Clients::One, T)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("listener: {e}")))
        .collect()
}

fn sorted(mut slots: Vec<Slot>) -> Vec<Slot> {
    slots.sort_by(|a, b| a.mount.cmp(&b.mount));
    slots
}

#[test]
fn two_relays_with_limits_listeners_and_players() {
    let lab = Lab::start(vec![
        RelaySpec::new("limited")
            .mount("/live.ogg", Some(5))
            .mount("/live.mp3", Some(2)),
        RelaySpec::new("open")
            .hostname("relay-open.example.org")
            .mount("/live.ogg", None)
            .mount("/live.mp3", None),
    ]);
    eprintln!(
        "lab of 2 relays ready in {:?} (status pages after {:?} / {:?})",
        lab.ready_in,
        lab.relay(0).ready_in(),
        lab.relay(1).ready_in()
    );
    let (limited, open) = (lab.relay(0), lab.relay(1));
    assert_ne!(limited.port(), open.port());

    // floe-slots.xsl is installed and reports the configured limits.
    assert_eq!(
        sorted(limited.slots().expect("slots of limited")),
        vec![slot("/live.mp3", 0, Some(2)), slot("/live.ogg", 0, Some(5))]
    );
    assert_eq!(
        sorted(open.slots().expect("slots of open")),
        vec![slot("/live.mp3", 0, None), slot("/live.ogg", 0, None)]
    );
    // The admin interface takes the generated credentials.
    let stats = limited.admin_stats().expect("admin stats");
    assert!(
        stats.contains("<max_listeners>5</max_listeners>"),
        "{stats}"
    );
    // listenurl carries <hostname>, mounts are matched by path.
    let mounts = open.mounts().expect("status-json of open");
    let ogg = mounts.iter().find(|m| m.mount == "/live.ogg").unwrap();
    let listenurl = ogg.raw["listenurl"].as_str().unwrap();
    assert_eq!(
        listenurl,
        format!("http://relay-open.example.org:{}/live.ogg", open.port())
    );

    // Real players decode audio straight from the open relay, in the
    // background while the listener checks run on the limited one.
    let (ogg_url, mp3_url) = (open.url("/live.ogg"), open.url("/live.mp3"));
    std::thread::scope(|s| {
        let ff = s.spawn(|| ffmpeg_decode(&ogg_url, 2.0));
        let mpv = s.spawn(|| mpv_decode(&mp3_url, 2.0));
        // GStreamer's playbin waits until its buffer holds ~5 s: with a
        // young source (small Icecast burst) that takes a few seconds.
        let gst = s.spawn(|| gstreamer_decode(&ogg_url, 1.5));
        // VLC 3.0.24 cannot play Icecast Ogg joined mid-stream: MP3.
        let vlc = s.spawn(|| vlc_decode(&mp3_url, 2.0));
        listener_checks(limited);
        for d in [ff, mpv, gst, vlc] {
            let run = d.join().unwrap();
            let d = assert_decoded(&run, 1.0);
            assert_eq!(d.video_frames, 0, "{}: audio-only stream", d.player);
        }
    });
}

fn listener_checks(limited: &IcecastRelay) {
    // Two listeners on /live.ogg, connecting at once, are counted.
    let t0 = Instant::now();
    let mut ogg = connect_all(&limited.url("/live.ogg"), 2);
    let heads = t0.elapsed();
    let took = limited.wait_for_listeners("/live.ogg", 2, T);
    eprintln!("2 listeners: response heads after {heads:?}, counted {took:?} later");
    assert_eq!(
        sorted(limited.slots().unwrap())[1],
        slot("/live.ogg", 2, Some(5))
    );

    // /live.mp3 holds 2: a third listener, once they are in, gets a 403.
    let mp3 = connect_all(&limited.url("/live.mp3"), 2);
    limited.wait_for_listeners("/live.mp3", 2, T);
    let err = StreamListener::connect(&limited.url("/live.mp3"), T)
        .expect_err("third listener on a mount with max 2");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("max listeners reached"), "{err}");
    drop(mp3);
    let took = limited.wait_for_listeners("/live.mp3", 0, T);
    eprintln!("2 listeners gone from status-json after {took:?}");

    // Listeners keep receiving data (the sine tone compresses to ~2 kB/s).
    let before: Vec<u64> = ogg.iter().map(StreamListener::bytes).collect();
    support::poll(T, Duration::from_millis(20), || {
        ogg.iter()
            .zip(&before)
            .all(|(l, b)| l.bytes() > *b)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("listeners stopped receiving: {ogg:?}"));
    assert!(ogg.iter().all(StreamListener::is_open));
    // Leaving is counted too.
    ogg.pop();
    let took = limited.wait_for_listeners("/live.ogg", 1, T);
    eprintln!("1 listener gone from status-json after {took:?}");
    drop(ogg);
}

#[test]
fn theora_video_source_decodes_frames() {
    let lab =
        Lab::start(vec![RelaySpec::new("video").mount_spec(
            MountSpec::new("/video.ogg").codec(Codec::Theora).max(3),
        )]);
    let relay = lab.relay(0);
    eprintln!("video relay ready in {:?}", lab.ready_in);
    let mut codecs = ffprobe_codecs(&relay.url("/video.ogg")).unwrap_or_else(|e| panic!("{e}"));
    codecs.sort();
    assert_eq!(codecs, ["theora", "vorbis"]);

    let d = ffmpeg_decode(&relay.url("/video.ogg"), 2.0).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "ffmpeg: {} video frames, {:.2} s audio in {:?}",
        d.video_frames, d.audio_secs, d.wall
    );
    // 10 fps test pattern: 2 s is ~20 frames.
    assert!(
        d.video_frames >= 10,
        "{} frames: {}",
        d.video_frames,
        d.log_tail
    );
    assert!(d.audio_secs >= 1.0, "{:.2} s audio", d.audio_secs);
}

#[test]
fn relay_restart_keeps_port_and_sources_come_back() {
    let mut lab = Lab::start(vec![RelaySpec::new("restart").mount("/live.mp3", Some(4))]);
    let port = lab.relay(0).port();
    let pid = lab.relay(0).pid();
    let spawns = lab.source(0, "/live.mp3").unwrap().spawns();

    lab.relay(0).stop();
    assert!(!lab.relay(0).is_running());
    assert!(
        lab.relay(0).get("/status-json.xsl").is_err(),
        "stopped relay still answers"
    );

    lab.relay_mut(0).restart();
    assert_eq!(lab.relay(0).port(), port);
    assert_ne!(lab.relay(0).pid(), pid);
    let took = lab.relay(0).wait_for_mounts(&["/live.mp3"], T);
    eprintln!("source back on the restarted relay after {took:?}");
    assert!(lab.source(0, "/live.mp3").unwrap().spawns() > spawns);

    lab.stop_source(0, "/live.mp3");
    lab.relay(0).wait_for_mount_gone("/live.mp3", T);
}
