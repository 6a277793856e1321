//! The request's parameter set: query string and body merged, query first, first occurrence wins.
//!
//! Parsers accept standard `application/x-www-form-urlencoded` (`+` is a space, `%XX` are UTF-8
//! bytes) and the tolerant multipart of the TOP SDKs: Java's header lines without spaces and its
//! body that starts with CRLF, Python's `Content-Disposition: file` parts, Go's `@name` file names.
//! File parts are kept apart: they are never signed. Values are kept exactly as decoded (never
//! trimmed), because the signature covers them byte for byte.

use std::collections::HashMap;
use std::fmt;

/// Why a request's bytes could not be turned into parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A name or value is not valid UTF-8 once percent-decoded (TOP code 47).
    #[error("parameter {0} is not valid UTF-8")]
    InvalidEncoding(String),
    /// A multipart body that cannot be split into parts.
    #[error("malformed multipart body: {0}")]
    MalformedMultipart(&'static str),
}

/// An uploaded file part: excluded from the signature, available to APIs that take `byte[]`.
#[derive(Clone, PartialEq, Eq)]
pub struct FilePart {
    pub name: String,
    pub filename: String,
    pub content: Vec<u8>,
}

impl fmt::Debug for FilePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePart")
            .field("name", &self.name)
            .field("filename", &self.filename)
            .field("len", &self.content.len())
            .finish()
    }
}

/// From this many parameters on, names are also found through a hash index. Below it a scan
/// is faster than hashing (a TOP call has about ten); above it, a scan per insert made a body
/// of many distinct names cost quadratic time: a 1 MiB form of short names took most of a
/// minute, before any credential was checked.
const INDEXED_FROM: usize = 32;

/// Ordered text parameters (first occurrence of a name wins) plus file parts.
#[derive(Debug, Clone, Default)]
pub struct ParamSet {
    entries: Vec<(String, String)>,
    files: Vec<FilePart>,
    /// The position of each name in `entries`, once there are [`INDEXED_FROM`] of them.
    index: Option<HashMap<String, usize>>,
}

/// Two sets are equal when their parameters and files are: the index only mirrors them.
impl PartialEq for ParamSet {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.files == other.files
    }
}

impl Eq for ParamSet {}

impl ParamSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter unless one of that name is already present (servlet `getParameter` rule).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        if self.position(&name).is_none() {
            self.push(name, value.into());
        }
    }

    /// Sets a parameter, replacing an existing value: for clients building a request.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.position(&name) {
            Some(at) => self.entries[at].1 = value,
            None => self.push(name, value),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| n != name);
        self.index = None;
        self.index_if_large();
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).map(|at| self.entries[at].1.as_str())
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.entries.iter().position(|(n, _)| n == name),
        }
    }

    /// Appends a parameter whose name is not present yet.
    fn push(&mut self, name: String, value: String) {
        if let Some(index) = &mut self.index {
            index.insert(name.clone(), self.entries.len());
        }
        self.entries.push((name, value));
        self.index_if_large();
    }

    fn index_if_large(&mut self) {
        if self.index.is_none() && self.entries.len() >= INDEXED_FROM {
            let index = self.entries.iter().enumerate();
            self.index = Some(index.map(|(at, (n, _))| (n.clone(), at)).collect());
        }
    }

    /// The value, or `None` when absent or empty: TOP treats an empty value as not given.
    pub fn get_non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn files(&self) -> &[FilePart] {
        &self.files
    }

    /// Form-urlencodes the text parameters (space as `+`), for clients.
    pub fn to_form(&self) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (n, v) in &self.entries {
            ser.append_pair(n, v);
        }
        ser.finish()
    }

    /// Merges the parameters of one HTTP request: the query string first, then the body as its
    /// content type says (form-urlencoded when absent or unknown, multipart when declared).
    pub fn from_request(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ParamError> {
        let mut set = ParamSet::new();
        if let Some(q) = query {
            set.extend_form(q.as_bytes())?;
        }
        match content_type.and_then(multipart_boundary) {
            Some(boundary) => set.extend_multipart(body, &boundary)?,
            None => {
                if !body.is_empty() && !is_non_form_body(content_type) {
                    set.extend_form(body)?;
                }
            }
        }
        Ok(set)
    }

    /// Adds the pairs of a form-urlencoded string.
    pub fn extend_form(&mut self, input: &[u8]) -> Result<(), ParamError> {
        for pair in input.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = decode_component(raw_name)?;
            let value = decode_component(raw_value)
                .map_err(|_| ParamError::InvalidEncoding(name.clone()))?;
            if !name.is_empty() {
                self.insert(name, value);
            }
        }
        Ok(())
    }

    fn extend_multipart(&mut self, body: &[u8], boundary: &str) -> Result<(), ParamError> {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        // Java's body starts with CRLF before the first delimiter, a standard one does not:
        // prefixing CRLF makes both look the same.
        let mut data = Vec::with_capacity(body.len() + 2);
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(body);
        let mut pos = find(&data, &delimiter, 0)
            .ok_or(ParamError::MalformedMultipart("no boundary delimiter"))?;
        loop {
            pos += delimiter.len();
            let rest = &data[pos..];
            if rest.starts_with(b"--") {
                return Ok(());
            }
            // Transport padding then CRLF after the delimiter line.
            let line_end = find(&data, b"\r\n", pos).ok_or(ParamError::MalformedMultipart(
                "unterminated delimiter line",
            ))?;
            let headers_start = line_end + 2;
            let headers_end = find(&data, b"\r\n\r\n", headers_start)
                .map(|i| (i, i + 4))
                .or_else(|| {
                    // A part with no headers at all starts right after the delimiter line.
                    data[headers_start..]
                        .starts_with(b"\r\n")
                        .then_some((headers_start, headers_start + 2))
                })
                .ok_or(ParamError::MalformedMultipart("unterminated part headers"))?;
            let next = find(&data, &delimiter, headers_end.1)
                .ok_or(ParamError::MalformedMultipart("missing closing delimiter"))?;
            let headers = &data[headers_start..headers_end.0];
            let content = &data[headers_end.1..next];
            self.add_part(headers, content)?;
            pos = next;
        }
    }

    fn add_part(&mut self, headers: &[u8], content: &[u8]) -> Result<(), ParamError> {
        let headers = String::from_utf8_lossy(headers);
        let mut name = None;
        let mut filename = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if !key.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            // The disposition type may be `form-data` or, from the Python SDK, `file`.
            for attr in value.split(';').skip(1) {
                if let Some((k, v)) = attr.split_once('=') {
                    let v = v.trim().trim_matches('"').to_string();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "name" => name = Some(v),
                        "filename" => filename = Some(v),
                        _ => {}
                    }
                }
            }
        }
        let Some(name) = name else {
            return Ok(());
        };
        match filename {
            Some(filename) => self.files.push(FilePart {
                name,
                filename,
                content: content.to_vec(),
            }),
            None => {
                let value = String::from_utf8(content.to_vec())
                    .map_err(|_| ParamError::InvalidEncoding(name.clone()))?;
                self.insert(name, value);
            }
        }
        Ok(())
    }
}

fn is_non_form_body(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("application/json") || ct.starts_with("application/octet-stream")
    })
}

/// The boundary of a `multipart/*` content type, wherever `boundary=` stands among its params.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let media = parts.next()?.trim();
    if !media.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("boundary"))
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Decodes one form component strictly: `+` → space, `%XX` → byte, then UTF-8. A `%` not
/// followed by two hex digits is kept literally, as lenient servlet containers do. Runs of
/// plain bytes are copied whole: most names and many values have no escape at all.
fn decode_component(raw: &[u8]) -> Result<String, ParamError> {
    // Byte by byte: the values that cost most here are URL-encoded JSON documents, whose
    // escapes are a few bytes apart, so copying the runs between them (a search and a copy
    // call per run) cost more than it saved on plain values.
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i).and_then(|h| hex_val(*h)),
                raw.get(i + 1).and_then(|l| hex_val(*l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|e| {
        ParamError::InvalidEncoding(String::from_utf8_lossy(e.as_bytes()).into_owned())
    })
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_first_then_body_first_occurrence_wins() {
        let set = ParamSet::from_request(
            Some("a=1&b=2"),
            Some("application/x-www-form-urlencoded;charset=UTF-8"),
            b"b=3&c=%E4%BD%A0+x",
        )
        .unwrap();
        assert_eq!(set.get("a"), Some("1"));
        assert_eq!(set.get("b"), Some("2"));
        assert_eq!(set.get("c"), Some("你 x"));
    }

    #[test]
    fn empty_values_are_kept() {
        let set = ParamSet::from_request(None, None, b"empty=&x").unwrap();
        assert_eq!(set.get("empty"), Some(""));
        assert_eq!(set.get("x"), Some(""));
    }

    #[test]
    fn invalid_utf8_is_an_encoding_error() {
        let err = ParamSet::from_request(Some("a=%FF"), None, b"").unwrap_err();
        assert!(matches!(err, ParamError::InvalidEncoding(_)));
    }

    #[test]
    fn lone_percent_is_literal() {
        let set = ParamSet::from_request(Some("a=100%&b=%4"), None, b"").unwrap();
        assert_eq!(set.get("a"), Some("100%"));
        assert_eq!(set.get("b"), Some("%4"));
    }

    #[test]
    fn java_multipart_without_spaces_and_leading_crlf() {
        let body = b"\r\n--123\r\nContent-Disposition:form-data;name=\"method\"\r\nContent-Type:text/plain\r\n\r\ntaobao.time.get\r\n--123\r\nContent-Disposition:form-data;name=\"image\";filename=\"a.png\"\r\nContent-Type:application/octet-stream\r\n\r\n\x00\x01\r\n--123--\r\n";
        let set = ParamSet::from_request(
            None,
            Some("multipart/form-data;charset=UTF-8;boundary=123"),
            body,
        )
        .unwrap();
        assert_eq!(set.get("method"), Some("taobao.time.get"));
        assert_eq!(set.get("image"), None);
        assert_eq!(set.files()[0].content, vec![0, 1]);
    }

    #[test]
    fn python_multipart_file_disposition() {
        let body = b"--PYTHON_SDK_BOUNDARY\r\nContent-Disposition: form-data; name=\"v\"\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n2.0\r\n--PYTHON_SDK_BOUNDARY\r\nContent-Disposition: file; name=\"img\"; filename=\"x.jpg\"\r\nContent-Transfer-Encoding: binary\r\n\r\nBIN\r\n--PYTHON_SDK_BOUNDARY--\r\n";
        let set = ParamSet::from_request(
            Some("app_key=1"),
            Some("multipart/form-data; boundary=PYTHON_SDK_BOUNDARY"),
            body,
        )
        .unwrap();
        assert_eq!(set.get("app_key"), Some("1"));
        assert_eq!(set.get("v"), Some("2.0"));
        assert_eq!(set.files()[0].name, "img");
    }

    #[test]
    fn go_multipart_at_filename() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"@x\"\r\n\r\nDATA\r\n--b--";
        let set = ParamSet::from_request(None, Some("multipart/form-data; boundary=\"b\""), body)
            .unwrap();
        assert_eq!(set.files()[0].filename, "@x");
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(query in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
                               body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
                               multipart in proptest::bool::ANY) {
            let q = String::from_utf8_lossy(&query).into_owned();
            let ct = if multipart { "multipart/form-data; boundary=xx" } else { "application/x-www-form-urlencoded" };
            let _ = ParamSet::from_request(Some(&q), Some(ct), &body);
        }

        /// Past [`INDEXED_FROM`] names the set finds them through its index; whatever the
        /// mix of inserts, sets and removes, it must agree with a plain list scanned each time.
        #[test]
        fn the_indexed_set_behaves_as_a_scanned_list(
            ops in proptest::collection::vec((0u8..3, 0u16..80, 0u8..4), 0..300)
        ) {
            let mut set = ParamSet::new();
            let mut model: Vec<(String, String)> = Vec::new();
            for (op, name, value) in ops {
                let (name, value) = (format!("n{name}"), format!("v{value}"));
                match op {
                    0 => {
                        set.insert(name.clone(), value.clone());
                        if !model.iter().any(|(n, _)| *n == name) {
                            model.push((name.clone(), value));
                        }
                    }
                    1 => {
                        set.set(name.clone(), value.clone());
                        match model.iter_mut().find(|(n, _)| *n == name) {
                            Some(entry) => entry.1 = value,
                            None => model.push((name.clone(), value)),
                        }
                    }
                    _ => {
                        set.remove(&name);
                        model.retain(|(n, _)| *n != name);
                    }
                }
                let expected = model.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
                proptest::prop_assert_eq!(set.get(&name), expected);
            }
            let listed: Vec<(String, String)> =
                set.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            proptest::prop_assert_eq!(&listed, &model);
            for (name, value) in &model {
                proptest::prop_assert_eq!(set.get(name), Some(value.as_str()));
            }
        }

        #[test]
        fn decoding_matches_a_byte_at_a_time_decoder(
            raw in proptest::collection::vec(
                proptest::sample::select(b"%+aF09zG\xe4\xbd\xa0\xff =".to_vec()),
                0..48,
            )
        ) {
            proptest::prop_assert_eq!(decode_component(&raw), decode_byte_at_a_time(&raw));
        }
    }

    /// The decoder of the first sessions, which the current one must agree with.
    fn decode_byte_at_a_time(raw: &[u8]) -> Result<String, ParamError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < raw.len() => match (digit(raw[i + 1]), digit(raw[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        fn digit(b: u8) -> Option<u8> {
            (b as char).to_digit(16).map(|d| d as u8)
        }
        String::from_utf8(out).map_err(|e| {
            ParamError::InvalidEncoding(String::from_utf8_lossy(e.as_bytes()).into_owned())
        })
    }
}
