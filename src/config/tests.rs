//! Config tests for `[admin]` and `[select] share`: defaults, validation
//! with line numbers, and the token never showing in `Debug`.

use super::*;

const RELAY_AND_STREAM: &str = r#"
[[relay]]
name = "r1"
url = "http://r1.example.org:8000"
status = { kind = "xslt" }
[[stream]]
name = "live"
mounts = ["/live.ogg"]
"#;

fn parse_in(dir: &Path, head: &str) -> (Option<Config>, Diagnostics) {
    parse(
        &dir.join("floe.toml"),
        &format!("{head}\n{RELAY_AND_STREAM}"),
    )
}

/// Asserts that config `head` (before the relay and stream) fails, with
/// an error on line `line` that says `message`.
fn fails_at(dir: &Path, head: &str, line: usize, message: &str) {
    let (config, diags) = parse_in(dir, head);
    assert!(config.is_none(), "{head} should fail");
    let errs = errors(&diags);
    assert!(
        errs.iter().any(|(l, m)| *l == line && m.contains(message)),
        "{head}: expected line {line} to say {message:?}, got {errs:?}"
    );
}

fn errors(diags: &Diagnostics) -> Vec<(usize, String)> {
    diags
        .0
        .iter()
        .filter(|d| d.is_error())
        .map(|d| (d.line, d.message.clone()))
        .collect()
}

#[test]
fn admin_is_disabled_without_a_token_and_listens_on_loopback_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (config, diags) = parse_in(dir.path(), "");
    let config = config.unwrap_or_else(|| panic!("{diags}"));
    assert_eq!(config.admin.token, None);
    assert_eq!(config.admin.listen, vec!["127.0.0.1:8081".parse().unwrap()]);
    assert_eq!(config.select.share, 1.0);
}

#[test]
fn the_token_comes_inline_or_from_a_file_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef";
    let (config, _) = parse_in(dir.path(), &format!("[admin]\ntoken = \"{secret}\""));
    assert_eq!(
        config.unwrap().admin.token.unwrap().expose(),
        secret.as_bytes()
    );

    std::fs::write(dir.path().join("admin.token"), format!("{secret}\n")).unwrap();
    let (config, diags) = parse_in(
        dir.path(),
        "[admin]\nlisten = [\"127.0.0.1:9999\"]\ntoken_file = \"admin.token\"",
    );
    let admin = config.unwrap_or_else(|| panic!("{diags}")).admin;
    assert_eq!(
        admin.token.as_ref().unwrap().expose(),
        secret.as_bytes(),
        "trailing newline trimmed"
    );
    assert_eq!(admin.listen, vec!["127.0.0.1:9999".parse().unwrap()]);
    let debug = format!("{admin:?}");
    assert!(
        !debug.contains(secret),
        "Debug must not print the token: {debug}"
    );
    assert!(diags.0.is_empty(), "{diags}");
}

#[test]
fn bad_admin_settings_are_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[admin]\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\ntoken_file = \"x\"",
            3,
            "either token or token_file",
        ),
        ("[admin]\ntoken = \"   \"", 2, "empty"),
        (
            "[admin]\ntoken = \"has space in it, long enough\"",
            2,
            "printable ASCII",
        ),
        ("[admin]\ntoken_file = \"missing.token\"", 2, "cannot read"),
        (
            "[admin]\ntoken_file = \"/dev/zero\"",
            2,
            "more than 4096 bytes",
        ),
        (
            "[admin]\nlisten = [\"localhost\"]\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"",
            2,
            "not an address:port",
        ),
        (
            "[admin]\nlisten = []\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"",
            3,
            "listen is empty",
        ),
        ("[admin]\ntoken = \"short\"", 2, "fewer than 16"),
        ("[admin]\nport = 1", 2, "unknown field"),
        ("[select]\nshare = 0.0", 2, "share"),
        ("[select]\nshare = 1.5", 2, "share"),
    ];
    for (head, line, message) in cases {
        fails_at(dir.path(), head, line, message);
    }
}

#[test]
fn weak_or_exposed_admin_settings_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let (config, diags) = parse_in(
        dir.path(),
        "[admin]\nlisten = [\"0.0.0.0:8081\"]\ntoken = \"0123456789abcdef\"",
    );
    assert!(config.is_some(), "{diags}");
    let warnings: Vec<&str> = diags.0.iter().map(|d| d.message.as_str()).collect();
    assert!(
        warnings
            .iter()
            .any(|m| m.contains("not a loopback address")),
        "{warnings:?}"
    );
}

#[test]
fn public_diagnostic_pages_are_a_warning_and_bad_networks_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let public = "[http]\nlisten = [\"0.0.0.0:8080\"]";
    let (config, diags) = parse_in(dir.path(), public);
    assert!(config.is_some(), "{diags}");
    assert!(
        diags
            .0
            .iter()
            .any(|d| d.message.contains("diagnostics_from")),
        "{diags}"
    );
    let restricted = format!("{public}\ndiagnostics_from = [\"10.0.0.0/8\"]");
    let (config, diags) = parse_in(dir.path(), &restricted);
    assert!(config.is_some() && diags.0.is_empty(), "{diags}");
    let (config, diags) = parse_in(dir.path(), "[http]\ndiagnostics_from = [\"10.0.0.0/33\"]");
    assert!(config.is_none());
    assert!(
        errors(&diags)
            .iter()
            .any(|(l, m)| *l == 2 && m.contains("not a network")),
        "{diags}"
    );
}

#[test]
fn basic_auth_over_plain_http_to_another_host_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let relay = |url: &str| {
        format!(
            "[[relay]]\nname = \"r\"\nurl = \"{url}\"\n\
             addresses = [\"192.0.2.1\"]\nstatus = {{ kind = \"icecast-xml\", user = \"admin\", password = \"secret\" }}\n"
        )
    };
    let warns = |url: &str| {
        let (config, diags) = parse_in(dir.path(), &relay(url));
        assert!(config.is_some(), "{diags}");
        diags.0.iter().any(|d| d.message.contains("clear text"))
    };
    assert!(warns("http://relay-1.example.org:8000"));
    assert!(!warns("https://relay-1.example.org:8443"));
    assert!(!warns("http://127.0.0.1:8000"));
}

#[test]
fn a_relay_password_comes_inline_or_from_a_file_and_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = |auth: &str| {
        format!(
            "[[relay]]\nname = \"r\"\nurl = \"https://relay-1.example.org:8443\"\n\
             addresses = [\"192.0.2.1\"]\nstatus = {{ kind = \"icecast-xml\", user = \"admin\"{auth} }}\n"
        )
    };
    let password = |auth: &str| {
        let (config, diags) = parse_in(dir.path(), &relay(auth));
        let config = config.unwrap_or_else(|| panic!("{auth}: {diags}"));
        let c = config.relays[0]
            .status
            .credentials
            .clone()
            .expect("credentials");
        assert_eq!(c.user, "admin");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains(c.password()),
            "Debug prints the password: {debug}"
        );
        c.password().to_string()
    };
    assert_eq!(password(", password = \"s3cret pass\""), "s3cret pass");
    std::fs::write(dir.path().join("relay.pass"), "from a file\n").unwrap();
    assert_eq!(password(", password_file = \"relay.pass\""), "from a file");

    for (auth, message) in [
        ("", "needs a password or a password_file"),
        (
            ", password = \"x\", password_file = \"relay.pass\"",
            "either password or password_file",
        ),
        (", password_file = \"missing.pass\"", "cannot read"),
        (", password_file = \"/dev/zero\"", "more than 4096 bytes"),
    ] {
        let (config, diags) = parse_in(dir.path(), &relay(auth));
        assert!(config.is_none(), "{auth} should fail");
        assert!(
            errors(&diags)
                .iter()
                .any(|(l, m)| *l == 5 && m.contains(message)),
            "{auth}: expected line 5 to say {message:?}: {diags}"
        );
    }
}

#[test]
fn share_is_a_fraction_of_the_free_slots() {
    let dir = tempfile::tempdir().unwrap();
    let (config, diags) = parse_in(dir.path(), "[select]\nshare = 0.5");
    assert_eq!(
        config.unwrap_or_else(|| panic!("{diags}")).select.share,
        0.5
    );
}

/// Found by fuzzing (`tests/fuzz`, target `config`): these errors are about
/// a value written in the file but were reported at 0:0, the place of a
/// problem with the whole file, so `floe check` named no line.
#[test]
fn errors_about_written_values_have_their_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(
        dir.path().join("zones/stream.example.org.zone"),
        "$TTL 60\n@ IN SOA ns1.stream.example.org. h.example.org. 1 3600 600 86400 60\n\
         @ IN NS ns1.stream.example.org.\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.2\n",
    )
    .unwrap();
    let cases = [
        (
            "[poll]\ninterval = \"1ms\"",
            2,
            "interval must be at least 100ms",
        ),
        (
            "[poll]\n\ntimeout = \"0s\"",
            3,
            "timeout must be more than 0",
        ),
        (
            "[[stream]]\nname = \"s\"\nmounts = [\"/s\"]\ndns = [\"s.example.com.\"]",
            4,
            "not inside any zone",
        ),
        (
            "[[stream]]\nname = \"s\"\nmounts = [\"/s\"]\n\
             mount_dns = { \"/s\" = [\"www.stream.example.org.\"] }",
            4,
            "also has records",
        ),
    ];
    for (head, line, message) in cases {
        let path = dir.path().join("floe.toml");
        let text = format!("{head}\n{RELAY_AND_STREAM}");
        let diags = load_str(&path, &text).expect_err(head);
        let errs = errors(&diags);
        assert!(
            errs.iter().any(|(l, m)| *l == line && m.contains(message)),
            "{head}: expected line {line} to say {message:?}, got {errs:?}"
        );
    }
}

/// Found while triaging the fuzz runs (not by the fuzzer itself): a
/// duration of a hundred billion years parsed, then `interval * 3` (the
/// default `grant_ttl`) overflowed and `floe check` panicked; a huge `ttl`
/// would have overflowed a clock when serving. Durations are capped.
#[test]
fn durations_too_long_to_compute_with_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for head in [
        "[poll]\ninterval = \"500000000000y\"",
        "[poll]\ntimeout = \"500000000000y\"",
        "[dns]\nttl = \"101y\"",
    ] {
        fails_at(dir.path(), head, 2, "longer than 100 years");
    }
    let (config, diags) = parse_in(dir.path(), "[poll]\nstale_after = \"99y\"");
    assert!(config.is_some(), "{diags}");
}

#[test]
fn bad_groups_and_pools_are_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let group = "[[group]]\nname = \"venue\"\nrelays = [\"r1\"]\n";
    let cases = [
        (
            "[[group]]\nname = \"g\"\nrelays = [\"nope\"]",
            3,
            "no [[relay]] is named \"nope\"",
        ),
        (
            "[[group]]\nname = \"*\"\nrelays = [\"r1\"]",
            2,
            "group name \"*\"",
        ),
        (
            "[[group]]\nname = \"g\"\nrelays = [\"r1\"]\n[[group]]\nname = \"g\"\nrelays = [\"r1\"]",
            5,
            "duplicate group name \"g\" (first defined on line 2)",
        ),
        (
            "[[pool]]\nname = \"p\"\nnetworks = [\"10.0.0.0/8\"]\norder = [\"nope\"]",
            4,
            "no [[group]] is named \"nope\"",
        ),
        (
            "[[pool]]\nname = \"p\"\nnetworks = [\"10.0.0.0/33\"]\norder = [\"*\"]",
            3,
            "is not a network",
        ),
        (
            "[[pool]]\nname = \"p\"\norder = [\"*\"]",
            2,
            "networks is empty",
        ),
        (
            "[[pool]]\nname = \"default\"\nnetworks = [\"10.0.0.0/8\"]\norder = [\"*\"]",
            2,
            "takes no networks",
        ),
        (
            "[[pool]]\nname = \"p\"\nnetworks = [\"10.0.0.0/8\"]\norder = []",
            4,
            "order is empty",
        ),
        (
            "[[pool]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\norder = [\"*\"]\n[[pool]]\nname = \"b\"\nnetworks = [\"10.0.0.0/8\"]\norder = [\"*\"]",
            7,
            "also a network of pool \"a\"",
        ),
    ];
    for (head, line, message) in cases {
        fails_at(dir.path(), head, line, message);
    }
    // Warnings: host bits, a group after "*", an exclusive group no pool names.
    let (config, diags) = parse_in(
        dir.path(),
        &format!(
            "{group}[[group]]\nname = \"x\"\nrelays = [\"r1\"]\nexclusive = true\n\
             [[pool]]\nname = \"hall\"\nnetworks = [\"10.1.2.3/16\"]\norder = [\"*\", \"venue\"]"
        ),
    );
    let config = config.unwrap_or_else(|| panic!("{diags}"));
    let warnings: Vec<&str> = diags.0.iter().map(|d| d.message.as_str()).collect();
    for w in ["it means 10.1.0.0/16", "never tried", "serve nobody"] {
        assert!(warnings.iter().any(|m| m.contains(w)), "{w}: {warnings:?}");
    }
    assert_eq!(config.pools[0].name, "default");
    assert_eq!(
        config.pools[1].networks,
        vec!["10.1.0.0/16".parse().unwrap()]
    );
}

#[test]
fn ecs_keys_are_checked_and_pool_networks_longer_than_ecs_reads_are_warned() {
    let dir = tempfile::tempdir().unwrap();
    let (config, diags) = parse_in(dir.path(), "");
    let dns = config.unwrap_or_else(|| panic!("{diags}")).dns;
    assert!(dns.ecs);
    assert_eq!((dns.ecs_max_prefix_v4, dns.ecs_max_prefix_v6), (24, 56));
    for (head, message) in [
        (
            "[dns]\necs_max_prefix_v4 = 33",
            "ecs_max_prefix_v4 is a prefix length from 1 to 32",
        ),
        (
            "[dns]\necs_max_prefix_v6 = 0",
            "ecs_max_prefix_v6 is a prefix length from 1 to 128",
        ),
    ] {
        fails_at(dir.path(), head, 2, message);
    }
    let pools = "[[pool]]\nname = \"desk\"\nnetworks = [\"10.1.2.0/28\", \"2001:db8::/64\", \"10.2.0.0/16\"]\norder = [\"*\"]";
    let (config, diags) = parse_in(dir.path(), pools);
    assert!(config.is_some(), "{diags}");
    let warned: Vec<(usize, usize, &str)> = diags
        .0
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert!(
        warned.iter().any(|(l, c, m)| *l == 3
            && *c == 13
            && m.contains("10.1.2.0/28 is longer than [dns] ecs_max_prefix_v4 = 24")),
        "{warned:?}"
    );
    assert!(
        warned.iter().any(
            |(_, _, m)| m.contains("2001:db8::/64 is longer than [dns] ecs_max_prefix_v6 = 56")
        ),
        "{warned:?}"
    );
    assert_eq!(warned.len(), 2, "{warned:?}");
    // ECS off: nothing to warn about.
    let (_, diags) = parse_in(dir.path(), &format!("[dns]\necs = false\n{pools}"));
    assert!(diags.0.is_empty(), "{diags}");
}

#[test]
fn proxy_listeners_and_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    // Defaults: no PROXY listener, nobody trusted.
    let (config, diags) = parse_in(dir.path(), "");
    let http = config.expect("valid").http;
    assert!(diags.0.is_empty(), "{diags}");
    assert!(http.proxy_protocol_listen.is_empty() && http.trusted_proxies.is_empty());

    let good = "[http]\nlisten = [\"127.0.0.1:8080\"]\nproxy_protocol_listen = [\"127.0.0.1:8081\", \"[::1]:8081\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1/32\"]";
    let (config, diags) = parse_in(dir.path(), good);
    let http = config.unwrap_or_else(|| panic!("{diags}")).http;
    assert_eq!(
        http.proxy_protocol_listen,
        [
            "127.0.0.1:8081".parse().unwrap(),
            "[::1]:8081".parse().unwrap()
        ]
    );
    assert_eq!(http.trusted_proxies.len(), 2);

    // A PROXY listener with nobody to trust: an error at the key's value.
    let (config, diags) = parse_in(
        dir.path(),
        "[http]\n\nproxy_protocol_listen = [\"127.0.0.1:8081\"]",
    );
    assert!(config.is_none());
    let d = diags.0.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!((d.line, d.column), (3, 25), "{diags}");
    assert!(d.message.contains("needs trusted_proxies"), "{diags}");
    let (config, _) = parse_in(
        dir.path(),
        "[http]\nproxy_protocol_listen = [\"127.0.0.1:8081\"]\ntrusted_proxies = []",
    );
    assert!(config.is_none());

    // Bad values, each with its line.
    for (head, line, what) in [
        (
            "[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"nonsense\"]",
            2,
            "not a network",
        ),
        (
            "[http]\ntrusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol_listen = [\"8081\"]",
            3,
            "not an address:port",
        ),
        (
            "[http]\nlisten = [\"127.0.0.1:8080\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol_listen = [\"127.0.0.1:8080\"]",
            4,
            "also in [http] listen",
        ),
    ] {
        fails_at(dir.path(), head, line, what);
    }

    // Trusting everyone is allowed, with a warning.
    let (config, diags) = parse_in(dir.path(), "[http]\ntrusted_proxies = [\"0.0.0.0/0\"]");
    assert!(config.is_some());
    assert!(
        diags
            .0
            .iter()
            .any(|d| d.line == 2 && d.message.contains("trusts every address")),
        "{diags}"
    );
}

#[test]
fn cors_origins_are_star_or_web_origins() {
    let dir = tempfile::tempdir().unwrap();
    let (config, diags) = parse_in(dir.path(), "");
    assert_eq!(
        config
            .unwrap_or_else(|| panic!("{diags}"))
            .http
            .cors_origins,
        vec![Box::from("*")]
    );
    let (config, diags) = parse_in(
        dir.path(),
        "[http]\ncors_origins = [\"HTTPS://Radio.Example.org\", \"http://localhost:8000\"]",
    );
    let http = config.unwrap_or_else(|| panic!("{diags}")).http;
    assert_eq!(
        http.cors_origins,
        vec![
            Box::from("https://radio.example.org"),
            Box::from("http://localhost:8000")
        ]
    );
    let (config, _) = parse_in(dir.path(), "[http]\ncors_origins = []");
    assert!(
        config.unwrap().http.cors_origins.is_empty(),
        "[] turns CORS off"
    );
    for bad in [
        "https://radio.example.org/player",
        "https://radio.example.org/",
        "radio.example.org",
        "ftp://radio.example.org",
        "https://user@radio.example.org",
    ] {
        let head = format!("[http]\ncors_origins = [\"{bad}\"]");
        fails_at(dir.path(), &head, 2, "is not \"*\" or a web origin");
    }
}
