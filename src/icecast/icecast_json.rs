//! Parser for Icecast's public `/status-json.xsl`.
//!
//! Icecast 2.4.4 makes this JSON by running its stock `xml2json.xslt` over
//! the public stats XML, which shapes it in ways a strict schema would reject:
//!
//! - `icestats.source` is an **array** with two or more mounts, an
//!   **object** with exactly one, and **absent** with none (a server with no
//!   source connected is a successful poll with no mounts).
//! - Every text that looks like a number becomes a JSON number and
//!   `true`/`false` a boolean, whatever the field (a stream named "2024" has
//!   `"server_name":2024`); empty elements become `null`, and a hidden last
//!   element leaves `"dummy":null`. So nothing is typed except what floe
//!   reads, and those fields accept a number or a numeric string.
//! - Mounts have no name field: the mount is the *path* of `listenurl`,
//!   whose host and port are the relay's configured `<hostname>` and first
//!   listen port, not the address floe polled (`http://relay-b.example.org:18111/live.ogg`
//!   is mount `/live.ogg`). A source without a usable `listenurl` is
//!   [`StatusError::Missing`].
//! - `max_listeners` is hidden by the stock stylesheet, so it is
//!   [`MaxListeners::Unknown`] unless a custom stylesheet emits it (a count,
//!   or `unlimited` / a negative number for no limit).
//! - `listeners` is the one required field per source. The bitrate (kbit/s)
//!   comes from `bitrate`, else `ice-bitrate`, else `audio_bitrate` (bit/s,
//!   rounded to kbit/s), and is `None` when none of them is a positive
//!   number.
//!
//! The body is parsed into a [`serde_json::Value`] and read from there:
//! given the shape-shifting above that is the clearest code. A two-mount
//! document (1.2 KB) takes about 6 µs and 80 small allocations in a release
//! build, about 3 ms of CPU per second for 1,000 relays polled every 2 s;
//! borrowing serde structs would save the allocations at the cost of
//! hand-written visitors for the array-or-object `source`. JSON syntax is
//! strict: a body that ends early is [`StatusError::Truncated`] (never a
//! partial success), any other syntax error is [`StatusError::Malformed`]
//! with its `line:column`.

use serde_json::error::Category;
use serde_json::{Map, Value};

use super::{
    MaxListeners, MountList, MountStatus, RelayStatus, StatusError, StatusKind, bitrate_kbps,
};

/// The format this module parses, which names it in errors.
const KIND: StatusKind = StatusKind::IcecastJson;

/// Parses an Icecast `/status-json.xsl` document (see the module docs).
///
/// Mounts come back in document order. Errors:
/// - [`StatusError::Truncated`]: the body ends before the JSON value does;
/// - [`StatusError::Malformed`]: any other JSON syntax error, a `source`
///   that is neither an array nor an object, a `listeners` or
///   `max_listeners` that is not a count, or a duplicate mount;
/// - [`StatusError::Missing`]: no `icestats` object, a source without a
///   usable `listenurl` or without `listeners`.
pub fn parse(body: &[u8]) -> Result<RelayStatus, StatusError> {
    let document: Value = serde_json::from_slice(body).map_err(json_error)?;
    let icestats = document
        .get("icestats")
        .and_then(Value::as_object)
        .ok_or_else(|| KIND.missing("no `icestats` object".to_owned()))?;

    let sources: &[Value] = match icestats.get("source") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(sources)) => sources,
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        Some(other) => {
            return Err(KIND.malformed(format!(
                "`icestats.source` is {}, expected an array or an object",
                kind(other)
            )));
        }
    };

    let mut mounts = MountList::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let source = source.as_object().ok_or_else(|| {
            KIND.malformed(format!(
                "source #{} is {}, expected an object",
                index + 1,
                kind(source)
            ))
        })?;
        mounts
            .push(parse_source(index, source)?)
            .map_err(|e| KIND.malformed(e))?;
    }
    Ok(mounts.finish())
}

/// Reads one `source` object; `index` (0-based) is for messages.
fn parse_source(index: usize, source: &Map<String, Value>) -> Result<MountStatus, StatusError> {
    let listenurl = source.get("listenurl");
    let path = listenurl
        .and_then(Value::as_str)
        .and_then(mount_path)
        .ok_or_else(|| {
            KIND.missing(format!(
                "source #{} has no usable listenurl (found {})",
                index + 1,
                listenurl.map_or_else(|| "none".to_owned(), Value::to_string)
            ))
        })?;

    let listeners = match source.get("listeners") {
        None | Some(Value::Null) => {
            return Err(KIND.missing(format!("mount {path:?} has no `listeners`")));
        }
        Some(value) => count(value).ok_or_else(|| {
            KIND.malformed(format!(
                "mount {path:?}: `listeners` is {value}, not a count"
            ))
        })?,
    };

    let max_listeners = match source.get("max_listeners") {
        None | Some(Value::Null) => MaxListeners::Unknown,
        Some(value) => max_listeners(value).ok_or_else(|| {
            KIND.malformed(format!(
                "mount {path:?}: `max_listeners` is {value}, neither a count nor \"unlimited\""
            ))
        })?,
    };

    let number_at = |key: &str| source.get(key).and_then(number);
    Ok(MountStatus {
        path: path.to_owned(),
        listeners,
        max_listeners,
        bitrate_kbps: bitrate_kbps(
            number_at("bitrate"),
            number_at("ice-bitrate"),
            number_at("audio_bitrate"),
        ),
    })
}

/// The path of a `listenurl` (`http://host:port/live.ogg` -> `/live.ogg`);
/// a bare path is taken as is. `None` without a path starting with `/`.
fn mount_path(listenurl: &str) -> Option<&str> {
    let path = match listenurl.split_once("://") {
        Some((_scheme, rest)) => rest.get(rest.find('/')?..)?,
        None => listenurl,
    };
    path.starts_with('/').then_some(path)
}

/// A number, or a string holding one (the stylesheet's coercion is not
/// something to rely on in either direction).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A listener count: a whole number in `0..=u32::MAX`.
fn count(value: &Value) -> Option<u32> {
    let n = number(value)?;
    // NaN and infinities fail `fract() == 0.0`.
    (n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n)).then_some(n as u32)
}

/// `max_listeners`: a count, `unlimited` or a negative number (Icecast's -1).
fn max_listeners(value: &Value) -> Option<MaxListeners> {
    if value
        .as_str()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("unlimited"))
    {
        return Some(MaxListeners::Unlimited);
    }
    let n = number(value)?;
    if n < 0.0 {
        return Some(MaxListeners::Unlimited);
    }
    count(value).map(MaxListeners::Limited)
}

/// The JSON type of `value`, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Maps a serde_json error: an early end of input is a truncated body,
/// anything else is malformed. The message is `line:column: what`.
fn json_error(err: serde_json::Error) -> StatusError {
    let full = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let what = full.strip_suffix(&position).unwrap_or(&full);
    let message = format!("{}:{}: {what}", err.line(), err.column());
    match err.classify() {
        Category::Eof => KIND.truncated(message),
        Category::Io | Category::Syntax | Category::Data => KIND.malformed(message),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::icecast::test_support::*;

    fixtures! {
        RELAY_IDLE = "status-json-relay-idle.json";
        MASTER_IDLE = "status-json-master-idle.json";
        LISTENERS = "status-json-listeners.json";
        MOUNT_FULL = "status-json-mount-full.json";
        ONE_MOUNT = "status-json-one-mount.json";
        NO_SOURCE = "status-json-no-source.json";
        UNLIMITED_HOSTNAME = "status-json-unlimited-hostname.json";
    }

    const UNKNOWN: MaxListeners = MaxListeners::Unknown;

    /// A document whose `source` is the given JSON.
    fn with_source(source: &str) -> String {
        format!(r#"{{"icestats":{{"host":"127.0.0.1","source":{source},"dummy":null}}}}"#)
    }

    /// A document with one source object made of `members` and a listenurl.
    fn one_source(members: &str) -> String {
        with_source(&format!(r#"{{"listenurl":"http://h:8000/m",{members}}}"#))
    }

    #[test]
    fn idle_relay_lists_both_mounts_with_no_listeners_and_an_unknown_limit() {
        assert_eq!(
            mounts(KIND, RELAY_IDLE),
            [
                mount("/live.mp3", 0, UNKNOWN, Some(64)),
                mount("/live.ogg", 0, UNKNOWN, Some(64)),
            ]
        );
    }

    #[test]
    fn idle_master_counts_its_two_pulling_relays_as_listeners() {
        assert_eq!(
            mounts(KIND, MASTER_IDLE),
            [
                mount("/live.mp3", 2, UNKNOWN, Some(64)),
                mount("/live.ogg", 2, UNKNOWN, Some(64)),
            ]
        );
    }

    #[test]
    fn relay_with_listeners_reports_them_per_mount() {
        assert_eq!(
            mounts(KIND, LISTENERS),
            [
                mount("/live.mp3", 1, UNKNOWN, Some(64)),
                mount("/live.ogg", 3, UNKNOWN, Some(64)),
            ]
        );
    }

    #[test]
    fn full_mount_reports_five_listeners_but_no_limit() {
        assert_eq!(
            mounts(KIND, MOUNT_FULL),
            [
                mount("/live.mp3", 1, UNKNOWN, Some(64)),
                mount("/live.ogg", 5, UNKNOWN, Some(64)),
            ]
        );
    }

    #[test]
    fn single_source_given_as_an_object_is_one_mount() {
        assert_eq!(
            mounts(KIND, ONE_MOUNT),
            [mount("/live.ogg", 5, UNKNOWN, Some(64))]
        );
    }

    #[test]
    fn relay_without_a_source_key_is_a_complete_status_with_no_mounts() {
        assert_eq!(mounts(KIND, NO_SOURCE), []);
        assert_eq!(mounts(KIND, with_source("null").as_bytes()), []);
        assert_eq!(mounts(KIND, with_source("[]").as_bytes()), []);
        assert_eq!(mounts(KIND, br#"{"icestats":{}}"#), []);
    }

    #[test]
    fn mount_is_the_listenurl_path_whatever_hostname_and_port_it_names() {
        assert_eq!(
            mounts(KIND, UNLIMITED_HOSTNAME),
            [
                mount("/live.mp3", 0, UNKNOWN, Some(64)),
                mount("/live.ogg", 0, UNKNOWN, Some(64)),
            ]
        );
    }

    #[test]
    fn status_kind_icecast_json_dispatches_here_and_uses_the_same_format_name() {
        assert_eq!(StatusKind::IcecastJson.parse(LISTENERS), parse(LISTENERS));
        assert_eq!(KIND, StatusKind::IcecastJson);
        assert_eq!(KIND.as_str(), "icecast-json");
    }

    #[test]
    fn listenurl_forms_that_name_a_path() {
        for (url, path) in [
            ("http://relay-b.example.org:18111/live.ogg", "/live.ogg"),
            ("https://[::1]:8443/a/b.mp3", "/a/b.mp3"),
            ("http://h/", "/"),
            ("/bare.ogg", "/bare.ogg"),
            ("http://h:8000/caf\\u00e9", "/caf\u{e9}"),
        ] {
            let body = with_source(&format!(r#"{{"listenurl":"{url}","listeners":1}}"#));
            assert_eq!(mounts(KIND, body.as_bytes())[0].path, path, "{url}");
        }
    }

    #[test]
    fn source_without_a_usable_listenurl_is_missing() {
        for listenurl in [
            "",
            r#","listenurl":null"#,
            r#","listenurl":8000"#,
            r#","listenurl":"http://h:8000""#,
            r#","listenurl":"h:8000/live.ogg""#,
            r#","listenurl":"""#,
        ] {
            let body = with_source(&format!(r#"[{{"listeners":1{listenurl}}}]"#));
            let message = missing_message(KIND, &body);
            assert!(
                message.contains("source #1") && message.contains("listenurl"),
                "{message}"
            );
        }
    }

    #[test]
    fn coerced_fields_are_read_leniently() {
        let body = one_source(
            r#""server_name":2024,"genre":true,"public":false,"server_description":null,
               "listeners":"7","bitrate":"128","stream_start":{"odd":[1,2]}"#,
        );
        assert_eq!(
            mounts(KIND, body.as_bytes()),
            [mount("/m", 7, UNKNOWN, Some(128))]
        );
    }

    #[test]
    fn listeners_may_be_a_number_or_a_numeric_string() {
        for listeners in ["3", "\"3\"", "\" 3 \"", "3.0"] {
            let body = one_source(&format!(r#""listeners":{listeners}"#));
            assert_eq!(mounts(KIND, body.as_bytes())[0].listeners, 3, "{listeners}");
        }
    }

    #[test]
    fn missing_or_null_listeners_is_missing_naming_the_mount() {
        for members in [r#""genre":"x""#, r#""listeners":null"#] {
            let message = missing_message(KIND, &one_source(members));
            assert!(
                message.contains("\"/m\"") && message.contains("listeners"),
                "{message}"
            );
        }
    }

    #[test]
    fn listeners_that_is_not_a_count_is_malformed_naming_the_mount() {
        for listeners in [
            "-1",
            "1.5",
            "4294967296",
            "\"x\"",
            "\"\"",
            "true",
            "[]",
            "{}",
        ] {
            let message =
                malformed_message(KIND, &one_source(&format!(r#""listeners":{listeners}"#)));
            assert!(message.contains("\"/m\""), "{listeners}: {message}");
        }
    }

    #[test]
    fn max_listeners_from_a_custom_stylesheet_is_read() {
        for (max, expected) in [
            ("5", MaxListeners::Limited(5)),
            ("\"5\"", MaxListeners::Limited(5)),
            ("0", MaxListeners::Limited(0)),
            ("\"unlimited\"", MaxListeners::Unlimited),
            ("-1", MaxListeners::Unlimited),
            ("\"-1\"", MaxListeners::Unlimited),
            ("null", MaxListeners::Unknown),
        ] {
            let body = one_source(&format!(r#""listeners":1,"max_listeners":{max}"#));
            assert_eq!(
                mounts(KIND, body.as_bytes())[0].max_listeners,
                expected,
                "{max}"
            );
        }
    }

    #[test]
    fn max_listeners_that_is_not_a_count_is_malformed() {
        for max in ["\"lots\"", "5.5", "true", "4294967296"] {
            let message = malformed_message(
                KIND,
                &one_source(&format!(r#""listeners":1,"max_listeners":{max}"#)),
            );
            assert!(message.contains("max_listeners"), "{max}: {message}");
        }
    }

    #[test]
    fn bitrate_comes_from_bitrate_then_ice_bitrate_then_audio_bitrate_in_bits() {
        let cases = [
            (
                r#""bitrate":128,"ice-bitrate":96,"audio_bitrate":64000"#,
                Some(128),
            ),
            (r#""ice-bitrate":96,"audio_bitrate":64000"#, Some(96)),
            (r#""ice-bitrate":"96""#, Some(96)),
            (r#""audio_bitrate":64000"#, Some(64)),
            (r#""audio_bitrate":"111600""#, Some(112)),
            (r#""bitrate":"Quality 0.5","ice-bitrate":96"#, Some(96)),
            (r#""bitrate":0,"audio_bitrate":32000"#, Some(32)),
            (r#""bitrate":127.6"#, Some(128)),
            (
                r#""bitrate":null,"ice-bitrate":-64,"audio_bitrate":true"#,
                None,
            ),
            (r#""genre":"no bitrate""#, None),
        ];
        for (members, kbps) in cases {
            let body = one_source(&format!(r#""listeners":0,{members}"#));
            assert_eq!(
                mounts(KIND, body.as_bytes())[0].bitrate_kbps,
                kbps,
                "{members}"
            );
        }
    }

    #[test]
    fn duplicate_mount_is_malformed() {
        let source = r#"{"listenurl":"http://a:1/m","listeners":1}"#;
        let other_host = r#"{"listenurl":"http://b:2/m","listeners":2}"#;
        let message = malformed_message(KIND, &with_source(&format!("[{source},{other_host}]")));
        assert!(message.contains("duplicate"), "{message}");
    }

    #[test]
    fn source_that_is_neither_an_array_nor_an_object_is_malformed() {
        for source in ["\"live\"", "3", "true"] {
            malformed_message(KIND, &with_source(source));
        }
        let message = malformed_message(KIND, &with_source("[1]"));
        assert!(message.contains("source #1"), "{message}");
    }

    #[test]
    fn document_without_an_icestats_object_is_missing() {
        for body in [
            "{}",
            r#"{"icestats":null}"#,
            r#"{"icestats":[]}"#,
            "[]",
            "42",
            r#""icestats""#,
        ] {
            let message = missing_message(KIND, body);
            assert!(message.contains("icestats"), "{body}: {message}");
        }
    }

    #[test]
    fn syntax_error_is_malformed_with_line_and_column() {
        let message = malformed_message(KIND, r#"{"icestats":}"#);
        assert!(message.starts_with("1:13: "), "{message}");
        let message = malformed_message(KIND, "{\"icestats\":\n{}}}");
        assert!(message.starts_with("2:4: "), "{message}");
        for body in [
            "<html></html>",
            "{'icestats':{}}",
            "{\"icestats\":{},}",
            "\u{feff}{}",
        ] {
            malformed_message(KIND, body);
        }
    }

    #[test]
    fn every_cut_before_the_closing_brace_is_truncated() {
        for fixture in ALL_FIXTURES {
            assert_cuts_truncated(KIND, fixture, fixture.len());
        }
    }

    #[test]
    fn whitespace_only_body_is_truncated() {
        assert!(is_truncated(KIND, &parse(b"")));
        assert!(is_truncated(KIND, &parse(b" \n")));
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let body = b"{\"icestats\":{\"host\":\"\xff\"}}";
        assert!(matches!(parse(body), Err(StatusError::Malformed { .. })));
    }

    /// Any JSON value, as text, for `source` and its members.
    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            "[ -~]{0,12}".prop_map(|s| Value::String(s).to_string()),
            Just("\"unlimited\"".to_owned()),
            Just("\"http://h:1/m\"".to_owned()),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "listeners",
                            "listenurl",
                            "max_listeners",
                            "bitrate",
                            "ice-bitrate",
                            "audio_bitrate",
                            "x",
                        ]),
                        inner
                    ),
                    0..5
                )
                .prop_map(|members| {
                    let members: Vec<String> = members
                        .iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            assert_sound(&parse(&body));
        }

        #[test]
        fn arbitrary_json_shapes_never_panic(source in json_value()) {
            assert_sound(&parse(with_source(&source).as_bytes()));
        }

        #[test]
        fn mutated_fixtures_never_panic(body in mutated(ALL_FIXTURES)) {
            assert_sound(&parse(&body));
        }
    }
}
