//! `floe-fuzz TARGET`: AFL runs one of the fuzz targets of
//! `tests/fuzz/targets.rs` (see `tests/fuzz/run`).

#[path = "../targets.rs"]
mod targets;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(&(_, target)) = targets::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = targets::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: floe-fuzz TARGET (one of: {})", names.join(", "));
        std::process::exit(2);
    };
    targets::warm_up();
    afl::fuzz!(|data: &[u8]| target(data));
}
