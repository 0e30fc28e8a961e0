//! The full event simulation: `cargo bench --bench event_sim` prints the
//! table; `cargo bench --bench event_sim -- --write` also rewrites the
//! table in `docs/simulation.md` and the plot `docs/simulation.svg`.
//! Options: `--scale F` (1.0 = 100,000 listeners), `--seed N`.

#[path = "mod.rs"]
mod sim;

use std::path::Path;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut scale, mut seed, mut write) = (1.0, 2026, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scale" => scale = args.next().and_then(|v| v.parse().ok()).expect("--scale F"),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed N"),
            "--write" => write = true,
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    let started = Instant::now();
    let scenario = sim::scenario::Scenario::keynote(seed, scale);
    let tallies = sim::compare(&scenario);
    let table = sim::report::table(&scenario, &tallies);
    println!("{table}");
    for t in tallies.iter().filter(|t| t.waited > 0) {
        println!(
            "{}: held requests {} times while the relays with room were quiet, the longest {:.2} s",
            t.name, t.waited, t.longest_wait
        );
    }
    println!("simulated in {:.1} s", started.elapsed().as_secs_f64());
    if write {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = root.join("docs/simulation.md");
        let text = std::fs::read_to_string(&doc).expect("docs/simulation.md");
        let (begin, end) = ("<!-- table:begin -->\n", "<!-- table:end -->");
        let (a, b) = (
            text.find(begin).expect("table:begin marker") + begin.len(),
            text.find(end).expect("table:end marker"),
        );
        let mut updated = text[..a].to_string();
        updated.push_str(&table);
        updated.push_str(&text[b..]);
        std::fs::write(&doc, updated).expect("write docs/simulation.md");
        sim::report::plot(
            &root.join("docs/simulation.svg"),
            &scenario,
            &tallies,
            &[0, 2],
        )
        .expect("plot");
        println!("wrote docs/simulation.md and docs/simulation.svg");
    }
}
