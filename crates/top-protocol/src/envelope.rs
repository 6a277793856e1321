//! The response envelope writer: JSON (wrapped or `simplify=true`) and XML.
//!
//! A response is a typed [`Object`] (field order as given, `request_id` appended last). The
//! wrapper name follows the TOP rule: drop a leading `taobao.`, dots become underscores, then
//! `_response`. Lists are `{"field":{"item":[…]}}` wrapped, plain arrays when simplified, and
//! `<field list="true"><item>…</item></field>` in XML. Errors are always `error_response`.
//! XML text is escaped, and characters XML 1.0 cannot carry (C0 controls other than tab, LF and
//! CR; U+FFFE, U+FFFF) become U+FFFD, so an echoed client value never breaks a client's parser.

use std::borrow::Cow;

use crate::error::TopError;

/// A response value, typed the way the API metadata types it (numbers stay numbers on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Obj(Object),
    List { item: String, items: Vec<Value> },
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Obj(o)
    }
}

/// An ordered set of fields. Absent values are simply not pushed: TOP omits nulls. Field names
/// are nearly always literals, borrowed rather than copied: an answer has dozens of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object(Vec<(Cow<'static, str>, Value)>);

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.0.push((name.into(), value.into()));
        self
    }

    pub fn opt_field<V: Into<Value>>(
        self,
        name: impl Into<Cow<'static, str>>,
        value: Option<V>,
    ) -> Self {
        match value {
            Some(v) => self.field(name, v),
            None => self,
        }
    }

    pub fn fields(&self) -> &[(Cow<'static, str>, Value)] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Renders the object alone as compact JSON (wrapped list form), e.g. to store it.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_json_object(&mut out, self, false, None);
        out
    }
}

/// The response format asked for with `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// `format` absent means XML, as on TOP.
    pub fn from_param(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("") => Some(Format::Xml),
            Some(v) if v.eq_ignore_ascii_case("json") => Some(Format::Json),
            Some(v) if v.eq_ignore_ascii_case("xml") => Some(Format::Xml),
            Some(_) => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json;charset=UTF-8",
            Format::Xml => "text/xml;charset=UTF-8",
        }
    }

    pub fn as_wire(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xml => "xml",
        }
    }
}

/// `taobao.time.get` → `time_get_response`; `alibaba.x.y` → `alibaba_x_y_response`.
pub fn response_name(method: &str) -> String {
    let stem = method.strip_prefix("taobao.").unwrap_or(method);
    let mut name = stem.replace('.', "_");
    name.push_str("_response");
    name
}

const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8" ?>"#;

/// Writes a success envelope for `method`.
pub fn write_success(
    method: &str,
    body: &Object,
    request_id: &str,
    format: Format,
    simplify: bool,
) -> String {
    // The largest answer (lianbei, about 900 bytes) then needs no regrowth.
    let mut out = String::with_capacity(1024);
    match format {
        Format::Json => {
            if simplify {
                write_json_object(&mut out, body, true, Some(request_id));
            } else {
                out.push_str("{\"");
                out.push_str(&response_name(method));
                out.push_str("\":");
                write_json_object(&mut out, body, false, Some(request_id));
                out.push('}');
            }
        }
        Format::Xml => {
            out.push_str(XML_DECLARATION);
            let root = response_name(method);
            open_tag(&mut out, &root, false);
            write_xml_fields(&mut out, body);
            write_xml_leaf(&mut out, "request_id", request_id);
            close_tag(&mut out, &root);
        }
    }
    out
}

/// Writes an `error_response` (the same wrapper whether or not `simplify` was asked).
pub fn write_error(error: &TopError, request_id: &str, format: Format) -> String {
    let mut body = Object::new()
        .field("code", i64::from(error.code))
        .field("msg", error.msg.as_str());
    if let Some(sc) = &error.sub_code {
        body = body.field("sub_code", sc.as_str());
    }
    if let Some(sm) = &error.sub_msg {
        body = body.field("sub_msg", sm.as_str());
    }
    let mut out = String::with_capacity(160);
    match format {
        Format::Json => {
            out.push_str("{\"error_response\":");
            write_json_object(&mut out, &body, false, Some(request_id));
            out.push('}');
        }
        Format::Xml => {
            out.push_str(XML_DECLARATION);
            open_tag(&mut out, "error_response", false);
            write_xml_fields(&mut out, &body);
            write_xml_leaf(&mut out, "request_id", request_id);
            close_tag(&mut out, "error_response");
        }
    }
    out
}

/// Whether `serde_json` escapes byte `b` in a string: `"`, `\\` and the controls below U+0020.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The position of the first byte from `from` on that JSON escapes. Eight bytes are tested at
/// once while none of them does (the usual case: escapes are rare in answers).
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if any_needs_escape(word) {
            break;
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| needs_escape(b))
        .map(|offset| i + offset)
}

/// Whether any byte of `word` is below 0x20, `"` or `\\`: the classic bit tests for a byte
/// below a bound and for a zero byte (of `word` xor the searched byte), exact as a yes/no.
fn any_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, bound: u8| w.wrapping_sub(ONES * u64::from(bound)) & !w;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    (control | quote | backslash) & HIGH_BITS != 0
}

/// Writes `s` as a JSON string into `out`, escaped exactly as `serde_json` does (`"`, `\\`,
/// and control characters below U+0020; nothing else), without the string `serde_json` would
/// allocate per value: the lianbei answer has two dozen of them. Runs without escapes are
/// skipped eight bytes at a time and copied whole.
fn write_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        // Every byte that needs an escape is ASCII, so `i` is a character boundary.
        out.push_str(&s[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_json_object(out: &mut String, obj: &Object, simplify: bool, request_id: Option<&str>) {
    out.push('{');
    let mut first = true;
    for (name, value) in &obj.0 {
        if !first {
            out.push(',');
        }
        first = false;
        write_json_string(out, name);
        out.push(':');
        write_json_value(out, value, simplify);
    }
    if let Some(rid) = request_id {
        if !first {
            out.push(',');
        }
        out.push_str("\"request_id\":");
        write_json_string(out, rid);
    }
    out.push('}');
}

fn write_json_value(out: &mut String, value: &Value, simplify: bool) {
    match value {
        Value::Str(s) => write_json_string(out, s),
        Value::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Obj(o) => write_json_object(out, o, simplify, None),
        Value::List { item, items } => {
            if !simplify {
                out.push('{');
                write_json_string(out, item);
                out.push(':');
            }
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_value(out, v, simplify);
            }
            out.push(']');
            if !simplify {
                out.push('}');
            }
        }
    }
}

fn open_tag(out: &mut String, name: &str, list: bool) {
    out.push('<');
    out.push_str(name);
    if list {
        out.push_str(" list=\"true\"");
    }
    out.push('>');
}

fn close_tag(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Text as XML character data. A CR is written `&#13;`: a parser turns a literal one (and a
/// CR LF) into LF, so only the reference gives the client the text sent; it also keeps the
/// batch separator, `\r\n-S-\r\n`, out of every XML answer.
fn write_xml_leaf(out: &mut String, name: &str, text: &str) {
    open_tag(out, name, false);
    let escaped = if text.chars().any(not_xml_char) {
        let clean: String = text
            .chars()
            .map(|c| if not_xml_char(c) { '\u{FFFD}' } else { c })
            .collect();
        Cow::Owned(quick_xml::escape::escape(clean.as_str()).into_owned())
    } else {
        quick_xml::escape::escape(text)
    };
    if escaped.contains('\r') {
        out.push_str(&escaped.replace('\r', "&#13;"));
    } else {
        out.push_str(&escaped);
    }
    close_tag(out, name);
}

/// Characters XML 1.0 cannot carry, even escaped (C0 controls other than tab, LF and CR, and
/// U+FFFE/U+FFFF): XML parsers reject a document holding one.
fn not_xml_char(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

fn write_xml_fields(out: &mut String, obj: &Object) {
    for (name, value) in &obj.0 {
        write_xml_value(out, name, value);
    }
}

fn write_xml_value(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Str(s) => write_xml_leaf(out, name, s),
        Value::Int(n) => write_xml_leaf(out, name, itoa::Buffer::new().format(*n)),
        Value::Bool(b) => write_xml_leaf(out, name, if *b { "true" } else { "false" }),
        Value::Obj(o) => {
            open_tag(out, name, false);
            write_xml_fields(out, o);
            close_tag(out, name);
        }
        Value::List { item, items } => {
            open_tag(out, name, true);
            for v in items {
                write_xml_value(out, item, v);
            }
            close_tag(out, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn json_strings_are_escaped_as_serde_json_does(s in proptest::string::string_regex("(?s).{0,40}").unwrap()) {
            let mut out = String::new();
            write_json_string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }

        /// Long runs of the bytes next to the escaped ones, so that the eight-byte test meets
        /// each of them at every position of a word.
        #[test]
        fn json_strings_near_escapes_are_escaped_as_serde_json_does(
            chars in proptest::collection::vec(
                proptest::sample::select(vec!['a', ' ', '!', '"', '#', '[', '\\', ']', '\n', '\u{1f}', '\u{0}', '\u{7f}', 'é', '中']),
                0..80,
            )
        ) {
            let s: String = chars.into_iter().collect();
            let mut out = String::new();
            write_json_string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn json_strings_escape_every_control_character() {
        let s: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\/\u{7f}é中".chars())
            .collect();
        let mut out = String::new();
        write_json_string(&mut out, &s);
        assert_eq!(out, serde_json::to_string(&s).unwrap());
    }

    fn sample() -> Object {
        Object::new().field(
            "result",
            Object::new()
                .field("code", "SUCCESS")
                .field("model", true)
                .field("n", 5i64)
                .field(
                    "ids",
                    Value::List {
                        item: "number".into(),
                        items: vec![1i64.into(), 2i64.into()],
                    },
                ),
        )
    }

    #[test]
    fn names() {
        assert_eq!(response_name("taobao.time.get"), "time_get_response");
        assert_eq!(
            response_name("alibaba.taobao.ud.x"),
            "alibaba_taobao_ud_x_response"
        );
    }

    #[test]
    fn json_wrapped_simplified_and_xml() {
        assert_eq!(
            write_success("taobao.a.b", &sample(), "rid", Format::Json, false),
            r#"{"a_b_response":{"result":{"code":"SUCCESS","model":true,"n":5,"ids":{"number":[1,2]}},"request_id":"rid"}}"#
        );
        assert_eq!(
            write_success("taobao.a.b", &sample(), "rid", Format::Json, true),
            r#"{"result":{"code":"SUCCESS","model":true,"n":5,"ids":[1,2]},"request_id":"rid"}"#
        );
        assert_eq!(
            write_success("taobao.a.b", &sample(), "rid", Format::Xml, false),
            r#"<?xml version="1.0" encoding="utf-8" ?><a_b_response><result><code>SUCCESS</code><model>true</model><n>5</n><ids list="true"><number>1</number><number>2</number></ids></result><request_id>rid</request_id></a_b_response>"#
        );
    }

    #[test]
    fn xml_replaces_characters_xml_cannot_carry() {
        let body = Object::new().field("t", "a\u{1}b\u{fffe}\tc");
        assert!(write_success("m", &body, "r", Format::Xml, false)
            .contains("<t>a\u{FFFD}b\u{FFFD}\tc</t>"));
    }

    #[test]
    fn xml_writes_carriage_returns_as_references() {
        let body = Object::new().field("t", "a\r\n-S-\r\nb");
        let xml = write_success("m", &body, "r", Format::Xml, false);
        assert!(xml.contains("<t>a&#13;\n-S-&#13;\nb</t>"), "{xml}");
        let read = crate::reader::xml_to_json(&xml).expect("the answer parses");
        assert_eq!(read["m_response"]["t"], "a\r\n-S-\r\nb");
    }

    #[test]
    fn xml_escapes_text() {
        let body = Object::new().field("t", "<a&b>");
        assert!(
            write_success("m", &body, "r", Format::Xml, false).contains("<t>&lt;a&amp;b&gt;</t>")
        );
    }
}
