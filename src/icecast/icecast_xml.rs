//! Parser for Icecast's `/admin/stats` XML (HTTP basic auth).
//!
//! This is the full stats tree, the only Icecast 2.4.4 output that carries
//! `max_listeners` without a custom stylesheet:
//!
//! ```xml
//! <icestats><admin>…</admin>…<listeners>4</listeners>…
//!   <source mount="/live.ogg"><audio_bitrate>64000</audio_bitrate>…
//!     <bitrate>64</bitrate>…<ice-bitrate>64</ice-bitrate>…
//!     <listeners>3</listeners>…<max_listeners>5</max_listeners>…</source>
//! </icestats>
//! ```
//!
//! Only the children of `<source mount="…">` elements directly under the
//! `<icestats>` root are read, and of those only:
//! - `listeners`: required, a count;
//! - `max_listeners`: a count ([`MaxListeners::Limited`]), `unlimited` or a
//!   negative number ([`MaxListeners::Unlimited`], what Icecast says for no
//!   limit or -1), absent ([`MaxListeners::Unknown`]);
//! - the bitrate in kbit/s from `bitrate`, else `ice-bitrate` (both kbit/s),
//!   else `audio_bitrate` (bit/s, rounded to kbit/s). Which of them appear
//!   depends on the source client and codec, so none is required, and one
//!   that does not parse (or is 0) just passes to the next.
//!
//! Every other element (global counters, `listenurl`, titles, …) is skipped
//! without being decoded, so a new Icecast field cannot break the parse.
//!
//! The document is read as a stream of quick-xml events over the borrowed
//! body: no tree is built and field text is borrowed, so the allocations are
//! the mount list, its paths (a second copy in the set that refuses a
//! duplicate), quick-xml's stack of open element names and the rare field
//! split by an entity or CDATA (11 in all for a two-mount document, about
//! 6 µs in a release build). A stream reader
//! happily stops at the end of input with elements still open, so the parser
//! tracks the depth itself: a body that ends before `</icestats>` is
//! [`StatusError::Truncated`], never a success with the mounts read so far.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::errors::{Error as XmlError, IllFormedError, SyntaxError};
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::{
    MaxListeners, MountList, MountStatus, RelayStatus, StatusError, StatusKind, bitrate_kbps,
};

/// The format this module parses, which names it in errors.
const KIND: StatusKind = StatusKind::IcecastXml;

/// Parses an Icecast `/admin/stats` document (see the module docs).
///
/// Mounts come back in document order. Errors:
/// - [`StatusError::Truncated`]: the body ends before `</icestats>` (or is
///   empty, or stops inside a tag, comment or reference);
/// - [`StatusError::Missing`]: the root is not `<icestats>`, a `<source>` has
///   no `mount` attribute, or a mount has no `<listeners>`;
/// - [`StatusError::Malformed`]: XML syntax errors (with the byte offset), a
///   count or limit that is not a number, a mount path not starting with `/`,
///   a duplicate mount or field, or content after the root.
pub fn parse(body: &[u8]) -> Result<RelayStatus, StatusError> {
    let mut reader = Reader::from_reader(body);
    // Whitespace-only text between elements is dropped instead of reported.
    reader.config_mut().trim_text(true);

    let mut mounts = MountList::default();
    // Open elements: 0 outside the root, 1 inside `<icestats>`, 2 inside a
    // child of the root (such as `<source>`), 3 inside a source field.
    let mut depth = 0usize;
    let mut root_seen = false;
    let mut root_closed = false;
    // The `<source>` being read (depth >= 2) and the field being read (depth 3).
    let mut source: Option<SourceFields<'_>> = None;
    let mut field: Option<Field> = None;

    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Err(xml_error(body, reader.error_position(), &err)),
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_empty = matches!(event, Event::Empty(_));
                if root_closed {
                    return Err(KIND.malformed(format!(
                        "element after </icestats> at byte {}",
                        reader.buffer_position()
                    )));
                }
                match depth {
                    0 => {
                        check_root(start)?;
                        root_seen = true;
                        // `<icestats/>`: a server with no mount at all.
                        root_closed = is_empty;
                    }
                    1 if start.name().as_ref() == b"source" => {
                        let fields = SourceFields::new(mount_path(start)?);
                        if is_empty {
                            push_mount(&mut mounts, fields)?;
                        } else {
                            source = Some(fields);
                        }
                    }
                    2 => {
                        if let Some(fields) = source.as_mut()
                            && let Some(f) = Field::from_name(start.name().as_ref())
                        {
                            // `<listeners/>` is a present, empty value.
                            fields.begin(f)?;
                            field = (!is_empty).then_some(f);
                        }
                    }
                    _ => {}
                }
                if !is_empty {
                    depth += 1;
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match start tags, so an
                // `End` always closes an element counted in `depth`.
                depth = depth.saturating_sub(1);
                match depth {
                    0 => root_closed = true,
                    1 => {
                        if let Some(fields) = source.take() {
                            push_mount(&mut mounts, fields)?;
                        }
                    }
                    2 => field = None,
                    _ => {}
                }
            }
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                if depth == 0 {
                    return Err(KIND.malformed(format!(
                        "text outside the <icestats> element at byte {}",
                        reader.buffer_position()
                    )));
                }
                if let (3, Some(f), Some(fields)) = (depth, field, source.as_mut()) {
                    let piece = text_of(&event).map_err(|e| {
                        KIND.malformed(format!("{}: {e}", f.describe(&fields.path)))
                    })?;
                    fields.append(f, piece);
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }

    if root_closed {
        return Ok(mounts.finish());
    }
    let message = if !root_seen {
        "body ends before the <icestats> root element".to_owned()
    } else if let Some(fields) = &source {
        format!(
            "body ends inside <source mount={:?}> after {} complete mounts",
            fields.path,
            mounts.len()
        )
    } else {
        format!("body ends before </icestats> after {} mounts", mounts.len())
    };
    Err(KIND.truncated(message))
}

/// The source fields floe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Listeners,
    MaxListeners,
    Bitrate,
    IceBitrate,
    AudioBitrate,
}

impl Field {
    fn from_name(name: &[u8]) -> Option<Field> {
        match name {
            b"listeners" => Some(Field::Listeners),
            b"max_listeners" => Some(Field::MaxListeners),
            b"bitrate" => Some(Field::Bitrate),
            b"ice-bitrate" => Some(Field::IceBitrate),
            b"audio_bitrate" => Some(Field::AudioBitrate),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Field::Listeners => "listeners",
            Field::MaxListeners => "max_listeners",
            Field::Bitrate => "bitrate",
            Field::IceBitrate => "ice-bitrate",
            Field::AudioBitrate => "audio_bitrate",
        }
    }

    /// `mount "/x" <field>`, for messages.
    fn describe(self, path: &str) -> String {
        format!("mount {path:?} <{}>", self.name())
    }
}

/// The raw text of the fields read so far from one `<source>`. Text borrows
/// from the body unless an entity or CDATA split it into pieces.
struct SourceFields<'a> {
    path: String,
    listeners: Option<Cow<'a, str>>,
    max_listeners: Option<Cow<'a, str>>,
    bitrate: Option<Cow<'a, str>>,
    ice_bitrate: Option<Cow<'a, str>>,
    audio_bitrate: Option<Cow<'a, str>>,
}

impl<'a> SourceFields<'a> {
    fn new(path: String) -> Self {
        SourceFields {
            path,
            listeners: None,
            max_listeners: None,
            bitrate: None,
            ice_bitrate: None,
            audio_bitrate: None,
        }
    }

    fn slot(&mut self, field: Field) -> &mut Option<Cow<'a, str>> {
        match field {
            Field::Listeners => &mut self.listeners,
            Field::MaxListeners => &mut self.max_listeners,
            Field::Bitrate => &mut self.bitrate,
            Field::IceBitrate => &mut self.ice_bitrate,
            Field::AudioBitrate => &mut self.audio_bitrate,
        }
    }

    /// Records that `field`'s element starts; a second one is ambiguous.
    fn begin(&mut self, field: Field) -> Result<(), StatusError> {
        if self.slot(field).is_some() {
            return Err(KIND.malformed(format!("{} appears twice", field.describe(&self.path))));
        }
        *self.slot(field) = Some(Cow::Borrowed(""));
        Ok(())
    }

    /// Appends a piece of `field`'s text (usually the only piece).
    fn append(&mut self, field: Field, piece: Cow<'a, str>) {
        let slot = self.slot(field);
        match slot {
            Some(text) if text.is_empty() => *text = piece,
            Some(text) => text.to_mut().push_str(&piece),
            None => *slot = Some(piece),
        }
    }

    /// Turns the collected text into a mount.
    fn finish(self) -> Result<MountStatus, StatusError> {
        let path = self.path;
        let Some(listeners) = self.listeners else {
            return Err(KIND.missing(format!("mount {path:?} has no <listeners>")));
        };
        let listeners = parse_count(&listeners).ok_or_else(|| {
            KIND.malformed(format!(
                "{} is {:?}, not a count",
                Field::Listeners.describe(&path),
                listeners.trim()
            ))
        })?;
        let max_listeners = match self.max_listeners {
            None => MaxListeners::Unknown,
            Some(text) => parse_max_listeners(&text).ok_or_else(|| {
                KIND.malformed(format!(
                    "{} is {:?}, neither a count nor `unlimited`",
                    Field::MaxListeners.describe(&path),
                    text.trim()
                ))
            })?,
        };
        let number = |text: &Option<Cow<'_, str>>| text.as_deref()?.trim().parse().ok();
        Ok(MountStatus {
            path,
            listeners,
            max_listeners,
            bitrate_kbps: bitrate_kbps(
                number(&self.bitrate),
                number(&self.ice_bitrate),
                number(&self.audio_bitrate),
            ),
        })
    }
}

/// Checks that the root element is `<icestats>`.
fn check_root(start: &BytesStart<'_>) -> Result<(), StatusError> {
    let name = start.name();
    if name.as_ref() == b"icestats" {
        return Ok(());
    }
    Err(KIND.missing(format!(
        "root element is <{}>, expected <icestats>",
        String::from_utf8_lossy(name.as_ref())
    )))
}

/// The `mount` attribute of a `<source>`, which must start with `/`.
fn mount_path(start: &BytesStart<'_>) -> Result<String, StatusError> {
    let attribute = start
        .try_get_attribute("mount")
        .map_err(|e| KIND.malformed(format!("bad attribute in <source>: {e}")))?
        .ok_or_else(|| KIND.missing("a <source> element has no mount attribute".to_owned()))?;
    let path = attribute
        .unescape_value()
        .map_err(|e| KIND.malformed(format!("bad mount attribute in <source>: {e}")))?;
    if !path.starts_with('/') {
        return Err(KIND.malformed(format!("mount {path:?} does not start with '/'")));
    }
    Ok(path.into_owned())
}

/// Finishes `fields` and appends the mount, refusing a duplicate path.
fn push_mount(mounts: &mut MountList, fields: SourceFields<'_>) -> Result<(), StatusError> {
    mounts.push(fields.finish()?).map_err(|e| KIND.malformed(e))
}

/// The text a text, CDATA or reference event stands for. References are
/// the five predefined entities (`&amp;`, ...) and `&#NN;` characters; a
/// document that declares its own entities is not something Icecast sends.
fn text_of<'a>(event: &Event<'a>) -> Result<Cow<'a, str>, String> {
    match event {
        Event::Text(text) => text.decode().map_err(|e| e.to_string()),
        Event::CData(cdata) => cdata.decode().map_err(|e| e.to_string()),
        Event::GeneralRef(reference) => resolve_reference(reference)
            .map(|c| Cow::Owned(c.to_string()))
            .ok_or_else(|| "unknown entity or bad character reference".to_owned()),
        _ => Ok(Cow::Borrowed("")),
    }
}

/// `&amp;`-style predefined entities and `&#NN;` character references.
fn resolve_reference(reference: &BytesRef<'_>) -> Option<char> {
    if reference.is_char_ref() {
        return reference.resolve_char_ref().ok().flatten();
    }
    let name = reference.decode().ok()?;
    quick_xml::escape::resolve_predefined_entity(&name)?
        .chars()
        .next()
}

/// A listener count: a non-negative integer that fits in `u32`.
fn parse_count(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// `max_listeners`: a count, `unlimited` or a negative number (Icecast's -1).
fn parse_max_listeners(text: &str) -> Option<MaxListeners> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("unlimited") {
        return Some(MaxListeners::Unlimited);
    }
    match text.parse::<i64>().ok()? {
        n if n < 0 => Some(MaxListeners::Unlimited),
        n => u32::try_from(n).ok().map(MaxListeners::Limited),
    }
}

/// Maps a quick-xml error: an input that stops inside a tag, comment,
/// CDATA, declaration or reference was cut, anything else is malformed.
fn xml_error(body: &[u8], position: u64, err: &XmlError) -> StatusError {
    let rest = usize::try_from(position)
        .ok()
        .and_then(|p| body.get(p..))
        .unwrap_or_default();
    let cut = match err {
        // `<!` or `&name` with nothing recognisable after: cut if the input
        // ends before any markup closes.
        XmlError::Syntax(SyntaxError::InvalidBangMarkup)
        | XmlError::IllFormed(IllFormedError::UnclosedReference) => rest
            .get(1..)
            .unwrap_or_default()
            .iter()
            .all(|b| !matches!(b, b'<' | b'>' | b'&' | b';')),
        // Every other syntax error means "the input ended before `>`, `-->`, ...".
        XmlError::Syntax(_) => true,
        _ => false,
    };
    if cut {
        KIND.truncated(format!("body ends inside markup at byte {position}: {err}"))
    } else {
        KIND.malformed(format!("at byte {position}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::icecast::test_support::*;

    fixtures! {
        LISTENERS = "admin-stats-listeners.xml";
        MOUNT_FULL = "admin-stats-mount-full.xml";
        NO_SOURCE = "admin-stats-no-source.xml";
        ONE_MOUNT = "admin-stats-one-mount.xml";
        UNLIMITED = "admin-stats-unlimited.xml";
    }

    /// A hand-written document using the XML features Icecast's output does
    /// not: comments, a PI, a doctype, CDATA, entities, empty elements.
    const FEATURES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE icestats>
<!-- made by hand -->
<icestats>
  <?floe test?>
  <listeners>99</listeners>
  <source mount="/a&amp;b"><listeners><![CDATA[7]]></listeners><max_listeners>&#49;0</max_listeners><note/></source>
  <source mount="/c"><server_name>x &lt; y</server_name><listeners> 2 </listeners><max_listeners>-1</max_listeners></source>
</icestats>
"#;

    /// One `<source>` with the given children, in a minimal document.
    fn one_source(children: &str) -> String {
        format!(r#"<icestats><source mount="/m">{children}</source></icestats>"#)
    }

    const LIMIT_5: MaxListeners = MaxListeners::Limited(5);

    #[test]
    fn relay_with_listeners_reports_listeners_limit_and_bitrate_per_mount() {
        assert_eq!(
            mounts(KIND, LISTENERS),
            [
                mount("/live.mp3", 1, LIMIT_5, Some(64)),
                mount("/live.ogg", 3, LIMIT_5, Some(64)),
            ]
        );
    }

    #[test]
    fn full_mount_has_as_many_listeners_as_its_limit() {
        assert_eq!(
            mounts(KIND, MOUNT_FULL),
            [
                mount("/live.mp3", 1, LIMIT_5, Some(64)),
                mount("/live.ogg", 5, LIMIT_5, Some(64)),
            ]
        );
    }

    #[test]
    fn one_mount_relay_lists_only_that_mount() {
        assert_eq!(
            mounts(KIND, ONE_MOUNT),
            [mount("/live.ogg", 5, LIMIT_5, Some(64))]
        );
    }

    #[test]
    fn relay_without_sources_is_a_complete_status_with_no_mounts() {
        assert_eq!(mounts(KIND, NO_SOURCE), []);
    }

    #[test]
    fn unlimited_max_listeners_is_unlimited_and_a_number_is_limited() {
        assert_eq!(
            mounts(KIND, UNLIMITED),
            [
                mount("/live.mp3", 0, MaxListeners::Limited(2), Some(64)),
                mount("/live.ogg", 0, MaxListeners::Unlimited, Some(64)),
            ]
        );
    }

    #[test]
    fn status_kind_icecast_xml_dispatches_here_and_uses_the_same_format_name() {
        assert_eq!(StatusKind::IcecastXml.parse(LISTENERS), parse(LISTENERS));
        assert_eq!(KIND, StatusKind::IcecastXml);
        assert_eq!(KIND.as_str(), "icecast-xml");
    }

    #[test]
    fn comments_cdata_entities_and_skipped_elements_are_understood() {
        assert_eq!(
            mounts(KIND, FEATURES.as_bytes()),
            [
                mount("/a&b", 7, MaxListeners::Limited(10), None),
                mount("/c", 2, MaxListeners::Unlimited, None),
            ]
        );
    }

    #[test]
    fn empty_icestats_root_is_a_status_with_no_mounts() {
        assert_eq!(mounts(KIND, b"<?xml version=\"1.0\"?>\n<icestats/>\n"), []);
        assert_eq!(mounts(KIND, b"<icestats></icestats>"), []);
    }

    #[test]
    fn only_sources_directly_under_the_root_are_mounts() {
        let body = r#"<icestats><listeners>9</listeners><x><source mount="/nested"><listeners>1</listeners></source></x><source mount="/m"><listeners>4</listeners><y><listeners>8</listeners></y></source></icestats>"#;
        assert_eq!(
            mounts(KIND, body.as_bytes()),
            [mount("/m", 4, MaxListeners::Unknown, None)]
        );
    }

    #[test]
    fn absent_max_listeners_is_unknown() {
        let body = one_source("<listeners>1</listeners>");
        assert_eq!(
            mounts(KIND, body.as_bytes()),
            [mount("/m", 1, MaxListeners::Unknown, None)]
        );
    }

    #[test]
    fn negative_or_unlimited_max_listeners_is_unlimited() {
        for max in ["-1", "-5", "unlimited", " unlimited ", "Unlimited"] {
            let body = one_source(&format!(
                "<listeners>1</listeners><max_listeners>{max}</max_listeners>"
            ));
            assert_eq!(
                mounts(KIND, body.as_bytes())[0].max_listeners,
                MaxListeners::Unlimited,
                "{max}"
            );
        }
    }

    #[test]
    fn max_listeners_that_is_not_a_number_is_malformed_naming_the_mount() {
        for max in ["", "lots", "5.5", "4294967296"] {
            let body = one_source(&format!(
                "<listeners>1</listeners><max_listeners>{max}</max_listeners>"
            ));
            let message = malformed_message(KIND, &body);
            assert!(
                message.contains("\"/m\"") && message.contains("max_listeners"),
                "{message}"
            );
        }
    }

    #[test]
    fn bitrate_comes_from_bitrate_then_ice_bitrate_then_audio_bitrate_in_bits() {
        let cases = [
            (
                "<bitrate>128</bitrate><ice-bitrate>96</ice-bitrate><audio_bitrate>64000</audio_bitrate>",
                Some(128),
            ),
            (
                "<ice-bitrate>96</ice-bitrate><audio_bitrate>64000</audio_bitrate>",
                Some(96),
            ),
            ("<audio_bitrate>64000</audio_bitrate>", Some(64)),
            ("<audio_bitrate>111600</audio_bitrate>", Some(112)),
            (
                "<bitrate>Quality 0.5</bitrate><ice-bitrate>96</ice-bitrate>",
                Some(96),
            ),
            (
                "<bitrate>0</bitrate><audio_bitrate>32000</audio_bitrate>",
                Some(32),
            ),
            ("<bitrate>127.6</bitrate>", Some(128)),
            (
                "<bitrate>-64</bitrate><ice-bitrate></ice-bitrate><audio_bitrate>x</audio_bitrate>",
                None,
            ),
            ("", None),
        ];
        for (fields, kbps) in cases {
            let body = one_source(&format!("<listeners>0</listeners>{fields}"));
            assert_eq!(
                mounts(KIND, body.as_bytes())[0].bitrate_kbps,
                kbps,
                "{fields}"
            );
        }
    }

    #[test]
    fn mount_without_listeners_is_missing_naming_the_mount() {
        let message = missing_message(KIND, &one_source("<max_listeners>5</max_listeners>"));
        assert!(
            message.contains("\"/m\"") && message.contains("listeners"),
            "{message}"
        );
        let message = missing_message(KIND, r#"<icestats><source mount="/e"/></icestats>"#);
        assert!(message.contains("\"/e\""), "{message}");
    }

    #[test]
    fn listeners_that_is_not_a_count_is_malformed_naming_the_mount() {
        for listeners in ["", "x", "-1", "1.5", "4294967296"] {
            let message = malformed_message(
                KIND,
                &one_source(&format!("<listeners>{listeners}</listeners>")),
            );
            assert!(message.contains("\"/m\""), "{listeners}: {message}");
        }
        malformed_message(KIND, &one_source("<listeners/>"));
    }

    #[test]
    fn source_without_mount_attribute_is_missing() {
        missing_message(
            KIND,
            "<icestats><source><listeners>1</listeners></source></icestats>",
        );
    }

    #[test]
    fn mount_path_must_start_with_a_slash() {
        for path in ["live.ogg", ""] {
            let body = format!(
                r#"<icestats><source mount="{path}"><listeners>1</listeners></source></icestats>"#
            );
            malformed_message(KIND, &body);
        }
    }

    #[test]
    fn duplicate_mount_is_malformed() {
        let source = r#"<source mount="/m"><listeners>1</listeners></source>"#;
        let message = malformed_message(KIND, &format!("<icestats>{source}{source}</icestats>"));
        assert!(message.contains("duplicate"), "{message}");
    }

    #[test]
    fn a_field_given_twice_is_malformed() {
        let message = malformed_message(
            KIND,
            &one_source("<listeners>1</listeners><listeners>2</listeners>"),
        );
        assert!(message.contains("twice"), "{message}");
    }

    #[test]
    fn root_other_than_icestats_is_missing() {
        let message = missing_message(KIND, "<html><body>401</body></html>");
        assert!(message.contains("<html>"), "{message}");
        missing_message(
            KIND,
            r#"<stats><source mount="/m"><listeners>1</listeners></source></stats>"#,
        );
    }

    #[test]
    fn content_after_the_root_is_malformed() {
        malformed_message(KIND, "<icestats></icestats><icestats></icestats>");
        malformed_message(KIND, "<icestats/><x/>");
        malformed_message(KIND, "<icestats></icestats>junk");
        malformed_message(KIND, "junk<icestats></icestats>");
    }

    #[test]
    fn xml_syntax_errors_are_malformed() {
        for body in [
            "<icestats></source></icestats>",
            "<icestats><source mount=/m></source></icestats>",
            r#"<icestats><source mount="/m" mount="/n"></source></icestats>"#,
            "<icestats>&bogus x</icestats>",
            "<icestats><!x></icestats>",
            "{\"icestats\":{}}",
        ] {
            let result = parse(body.as_bytes());
            assert!(
                matches!(
                    result,
                    Err(StatusError::Malformed { .. } | StatusError::Missing { .. })
                ),
                "{body}: {result:?}"
            );
        }
    }

    #[test]
    fn every_cut_before_the_end_of_the_root_is_truncated() {
        let documents = ALL_FIXTURES.iter().copied().chain([FEATURES.as_bytes()]);
        for document in documents {
            let root_end = document
                .windows(b"</icestats>".len())
                .rposition(|w| w == b"</icestats>")
                .unwrap()
                + b"</icestats>".len();
            assert_cuts_truncated(KIND, document, root_end);
        }
    }

    #[test]
    fn empty_or_whitespace_body_is_truncated() {
        assert!(is_truncated(KIND, &parse(b"")));
        assert!(is_truncated(KIND, &parse(b"  \n")));
        assert!(is_truncated(KIND, &parse(b"<?xml version=\"1.0\"?>\n")));
    }

    #[test]
    fn invalid_utf8_in_a_read_field_is_malformed() {
        let mut body = br#"<icestats><source mount="/m"><listeners>"#.to_vec();
        body.extend_from_slice(b"\xff</listeners></source></icestats>");
        assert!(matches!(parse(&body), Err(StatusError::Malformed { .. })));
    }

    /// Bytes biased towards XML markup and the element names read.
    fn xml_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        bytes_with(&[
            b"<icestats>",
            b"</icestats>",
            b"<source mount=\"/m\">",
            b"</source>",
            b"<listeners>",
            b"</listeners>",
            b"<max_listeners>",
            b"</max_listeners>",
            b"<![CDATA[",
            b"]]>",
            b"<!--",
            b"-->",
            b"&amp;",
            b"&#",
        ])
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            assert_sound(&parse(&body));
        }

        #[test]
        fn xml_like_bytes_never_panic(body in xml_like_bytes()) {
            assert_sound(&parse(&body));
        }

        #[test]
        fn mutated_fixtures_never_panic(body in mutated(ALL_FIXTURES)) {
            assert_sound(&parse(&body));
        }
    }
}
