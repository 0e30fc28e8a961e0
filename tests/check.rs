//! `floe check --config FILE`: the example config passes; a config with a
//! typo'd key, a duplicate relay and a zone with a syntax error fails with
//! each problem named as file:line:col.

mod support;

use std::path::Path;
use support::floe::floe_check as check;

#[test]
fn the_shipped_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floe.toml");
    let (code, stdout, stderr) = check(&example);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok (3 relays, 1 streams, 1 zones)"),
        "{stdout}"
    );
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(
        !stderr.contains("warning"),
        "the example teaches no bad habit: {stderr}"
    );
}

#[test]
fn every_error_is_reported_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let zone = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/stream.example.org.zone"),
    )
    .unwrap();
    let zone_lines = zone.lines().count();
    std::fs::write(
        dir.path().join("zones/stream.example.org.zone"),
        format!("{zone}broken IN A 192.0.2.300\n"),
    )
    .unwrap();
    let config = r#"[dns]
zones = "zones"
anwsers = 2

[[relay]]
name = "relay-1"
url = "http://relay-1.example.org:8000"
status = { kind = "xslt" }

[[relay]]
name = "relay-1"
url = "http://relay-2.example.org:8000"
status = { kind = "xslt" }

[[stream]]
name = "live"
mounts = ["/live.ogg"]
"#;
    let path = dir.path().join("floe.toml");
    std::fs::write(&path, config).unwrap();
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let cfg = path.display().to_string();
    assert!(
        stderr.contains(&format!("{cfg}:3:1: error: [dns]: unknown field `anwsers`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{cfg}:11:8: error: duplicate relay name \"relay-1\" (first defined on line 6)"
        )),
        "{stderr}"
    );
    let zone_path = dir
        .path()
        .join("zones/stream.example.org.zone")
        .display()
        .to_string();
    assert!(
        stderr.contains(&format!("{zone_path}:{}:", zone_lines + 1)),
        "zone error on the last line: {stderr}"
    );
    assert!(stderr.contains("192.0.2.300"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains(": error: ")).count(),
        3,
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_is_an_error_not_a_panic() {
    let (code, _, stderr) = check(Path::new("/nonexistent/floe.toml"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/floe.toml:0:0: error: cannot read config"),
        "{stderr}"
    );
}
