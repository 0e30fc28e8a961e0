//! End to end with real Icecast 2.4 relays fed by ffmpeg: real players
//! (ffmpeg, mpv, GStreamer, VLC, MPlayer, xine) follow floe's 302 and
//! decode audio (and video frames), a burst of three
//! times the room gets zero 403/404 from the relays, and a relay that dies
//! stops receiving listeners within interval + timeout x fall.

mod support;

use std::time::{Duration, Instant};
use support::floe::{FloeProcess, cell, relay_state};
use support::{
    Clients, Lab, RelaySpec, StreamListener, assert_decoded, ffmpeg_decode, gstreamer_decode,
    mplayer_decode, mpv_decode, vlc_decode, xine_decode,
};

const T: Duration = Duration::from_secs(20);
const MAX: u32 = 4;

#[test]
fn players_burst_and_failover_through_floe_with_real_relays() {
    let lab = Lab::start(vec![
        RelaySpec::new("r1")
            .mount("/live.ogg", Some(MAX))
            .mount("/live.mp3", Some(MAX))
            .mount("/video.ogv", Some(3)),
        RelaySpec::new("r2")
            .mount("/live.ogg", Some(MAX))
            .mount("/live.mp3", Some(MAX))
            .mount("/video.ogv", Some(3)),
        RelaySpec::new("r3")
            .mount("/live.ogg", Some(MAX))
            .mount("/live.mp3", Some(MAX)),
    ]);
    eprintln!("3 relays and 8 sources ready in {:?}", lab.ready_in);
    let mut relays = String::new();
    for (i, r) in lab.relays.iter().enumerate() {
        relays += &format!(
            "[[relay]]\nname = \"{}\"\nurl = \"{}\"\naddresses = [\"127.0.0.{}\"]\nstatus = {{ kind = \"xslt\" }}\n",
            r.name(),
            r.base_url(),
            i + 1
        );
    }
    // The default [poll] settings: the failover bound is the product's.
    let floe = FloeProcess::start(&format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zones = "zones"
[http]
listen = ["127.0.0.1:0"]
{relays}
[[stream]]
name = "live"
mounts = ["/live.ogg", "/live.mp3"]
[[stream]]
name = "video"
mounts = ["/video.ogv"]
"#
    ));
    floe.wait_healthy(T);
    floe.wait_status(T, "every relay up with its mounts", |s| {
        ["r1", "r2", "r3"]
            .iter()
            .all(|r| relay_state(s, r) == "up" && cell(s, r, "/live.mp3")["present"] == true)
            && cell(s, "r1", "/video.ogv")["present"] == true
    });

    // 1. Real players follow the 302 and decode.
    let (ogg, mp3, video) = (
        floe.url("/live.ogg"),
        floe.url("/live.mp3"),
        floe.url("/video.ogv"),
    );
    let results = std::thread::scope(|s| {
        let a = s.spawn(|| ffmpeg_decode(&ogg, 3.0));
        let b = s.spawn(|| mpv_decode(&mp3, 3.0));
        let c = s.spawn(|| gstreamer_decode(&ogg, 3.0));
        let d = s.spawn(|| ffmpeg_decode(&video, 3.0));
        [a, b, c, d].map(|h| h.join().unwrap())
    });
    for r in &results {
        assert_decoded(r, 1.0);
    }
    let video_frames = results[3].as_ref().unwrap().video_frames;
    assert!(
        video_frames >= 5,
        "ffmpeg decoded {video_frames} video frames of the Theora mount"
    );
    // The other players listeners use, in a second batch so seven decoders
    // do not share two cores at once. VLC 3.0.24 cannot play Icecast Ogg
    // joined mid-stream (see icecast-notes.md): MP3 for it.
    let results = std::thread::scope(|s| {
        let a = s.spawn(|| vlc_decode(&mp3, 2.0));
        let b = s.spawn(|| mplayer_decode(&ogg, 2.0));
        let c = s.spawn(|| xine_decode(&mp3, 1.5));
        [a, b, c].map(|h| h.join().unwrap())
    });
    for r in &results {
        assert_decoded(r, 1.0);
    }

    // The players are gone: wait until the relays count nobody.
    floe.wait_status(T, "players' listeners gone", |s| {
        ["r1", "r2", "r3"].iter().all(|r| {
            cell(s, r, "/live.mp3")["listeners"] == 0 && cell(s, r, "/live.ogg")["listeners"] == 0
        })
    });

    // 2. Bursts of 3x the room on /live.mp3, all at once, following the
    //    302: from as many addresses as listeners, then from one address
    //    (one household or NAT). Relays must refuse nobody floe sent.
    let room = 3 * MAX as usize;
    let room_total = room as u64;
    let burst_of = |clients: Clients| {
        let burst = StreamListener::connect_many(&mp3, 3 * room, true, clients, T);
        let mut admitted = 0;
        let mut refused_by_floe = 0;
        let mut refused_by_relay = Vec::new();
        for r in &burst {
            match r {
                Ok(l) => {
                    assert_eq!(l.redirects().len(), 1, "one hop through floe");
                    admitted += 1;
                }
                Err(e)
                    if e.to_string().starts_with(&mp3) && matches!(e.status(), Some(503 | 429)) =>
                {
                    refused_by_floe += 1
                }
                Err(e) => refused_by_relay.push(e.to_string()),
            }
        }
        eprintln!(
            "burst of {} ({clients:?}): admitted {admitted}, refused by floe (503/429) {refused_by_floe}, refused by relays {}",
            burst.len(),
            refused_by_relay.len()
        );
        assert!(
            refused_by_relay.is_empty(),
            "relays refused listeners floe sent: {refused_by_relay:#?}"
        );
        // The generation current during the burst: a page of a later one
        // (pages are cached up to a second per generation) is rendered
        // after it.
        let during = floe.status()["generation"].as_u64().unwrap_or(0);
        drop(burst);
        // Gone from the relays, their grants reconciled by a poll that
        // started after them (a poll can see them gone before that), and
        // every relay back in rotation: all the room is free again.
        floe.wait_status(T, "burst listeners and grants gone, all room back", |s| {
            if s["generation"].as_u64().unwrap_or(0) <= during {
                return false;
            }
            let room: u64 = ["r1", "r2", "r3"]
                .iter()
                .map(|r| {
                    let c = cell(s, r, "/live.mp3");
                    let idle = c["listeners"] == 0 && c["in_flight"] == 0;
                    if idle {
                        c["room"].as_u64().unwrap_or(0)
                    } else {
                        0
                    }
                })
                .sum();
            room == room_total
        });
        admitted
    };
    // Many addresses first: every free slot is used.
    let each = burst_of(Clients::Each);
    assert_eq!(each, room, "every free slot is used");
    // One address: at most its budget, and still no overfill.
    let one = burst_of(Clients::One);
    assert!(
        (1..=4).contains(&one),
        "one address got {one} of {room} slots (its budget is max(4, room / 4))"
    );

    // 3. Failover: r1 dies; it must stop getting listeners within
    //    interval x (1 + jitter) + timeout x fall = 2.2 s + 2 s.
    let bound = Duration::from_millis(2200 + 2000);
    let killed = Instant::now();
    lab.relay(0).stop();
    floe.wait_status(T, "r1 out of rotation", |s| {
        cell(s, "r1", "/live.ogg")["excluded"] == "down"
    });
    let took = killed.elapsed();
    eprintln!("failover: r1 excluded {took:?} after it died (bound {bound:?})");
    assert!(
        took <= bound + Duration::from_millis(300),
        "failover took {took:?}"
    );
    // Six choices (HEAD: the same choice as GET, without taking a slot or
    // spending this address's budget).
    for _ in 0..6 {
        let r = support::net::http_request("HEAD", &floe.url("/live.ogg"), &[], T).unwrap();
        assert_eq!(r.status, 302);
        let loc = r.header("location").unwrap();
        assert!(
            !loc.starts_with(&lab.relay(0).base_url()),
            "dead relay chosen: {loc}"
        );
    }
}
