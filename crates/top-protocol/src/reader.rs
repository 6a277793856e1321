//! The response envelope reader, for clients: turns a JSON or XML body into the response object
//! (wrapper removed) or the [`TopError`] of an `error_response`.
//!
//! XML leaves become JSON strings (XML carries no types) and `list="true"` wrappers become arrays,
//! so typed clients deserialize both formats with number-or-string tolerant fields.

use quick_xml::events::Event;
use serde_json::{Map, Value as Json};

use crate::envelope::Format;
use crate::error::TopError;

/// A decoded response: the object inside the wrapper and its `request_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub body: Json,
    pub request_id: Option<String>,
}

/// Why a body is not a successful response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("{error}")]
    Top {
        error: TopError,
        request_id: Option<String>,
    },
    #[error("unreadable response body: {0}")]
    Malformed(String),
}

/// Reads a response body written in `format` (`simplify` says whether JSON was unwrapped).
///
/// Only a TOP envelope is read (§5): a root with one member, or an XML root element, named
/// `…_response` and holding the response object, or named `error_response` and holding an error
/// with a non-zero integer `code`. With `simplify` a JSON success has no wrapper, so any object
/// without an `error_response` member is read as one: this reader cannot tell it from other JSON,
/// and a client should also require the HTTP status a success comes with.
pub fn read(body: &str, format: Format, simplify: bool) -> Result<Response, ReadError> {
    let root = match format {
        Format::Json => serde_json::from_str::<Json>(body)
            .map_err(|e| ReadError::Malformed(format!("not JSON: {e}")))?,
        Format::Xml => xml_to_json(body)?,
    };
    let Json::Object(mut map) = root else {
        return Err(not_an_envelope("the root is not an object"));
    };
    if let Some(err) = map.remove("error_response") {
        if !map.is_empty() {
            return Err(not_an_envelope(
                "error_response has other members beside it",
            ));
        }
        return Err(top_error(&err));
    }
    let mut inner = if simplify && format == Format::Json {
        Json::Object(map)
    } else {
        let mut members = map.into_iter();
        match (members.next(), members.next()) {
            (Some((name, inner @ Json::Object(_))), None) if is_response_name(&name) => inner,
            _ => {
                return Err(not_an_envelope(
                    "the root is not one `…_response` member holding an object",
                ))
            }
        }
    };
    let request_id = inner
        .as_object_mut()
        .and_then(|o| o.remove("request_id"))
        .and_then(|v| v.as_str().map(str::to_string));
    Ok(Response {
        body: inner,
        request_id,
    })
}

/// Whether `name` is a success wrapper's: a response name (`time_get_response`), never the bare
/// suffix.
fn is_response_name(name: &str) -> bool {
    name.strip_suffix("_response")
        .is_some_and(|method| !method.is_empty())
}

fn not_an_envelope(why: &str) -> ReadError {
    ReadError::Malformed(format!("not a TOP envelope: {why}"))
}

/// The error of an `error_response`, whose `code` is always present and non-zero (§5.4): one
/// without it is no TOP error, and inventing code 0 would hide that. The code is a JSON number
/// on the wire; its text form is taken too, as XML carries it and Java and Python accept it.
fn top_error(err: &Json) -> ReadError {
    let text = |k: &str| -> Option<String> {
        err.get(k).and_then(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let Some(code) = text("code")
        .and_then(|c| c.parse::<u32>().ok())
        .filter(|c| *c != 0)
    else {
        return not_an_envelope("error_response without a non-zero integer code");
    };
    ReadError::Top {
        error: TopError {
            code,
            msg: text("msg").unwrap_or_default(),
            sub_code: text("sub_code"),
            sub_msg: text("sub_msg"),
        },
        request_id: text("request_id"),
    }
}

struct Frame {
    name: String,
    list: bool,
    children: Vec<(String, Json)>,
    text: String,
}

/// Converts an XML document to JSON: `{root: {...}}`.
pub fn xml_to_json(xml: &str) -> Result<Json, ReadError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Frame> = Vec::new();
    let malformed = |e: String| ReadError::Malformed(e);
    loop {
        match reader.read_event().map_err(|e| malformed(e.to_string()))? {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                let list = start
                    .attributes()
                    .flatten()
                    .any(|a| a.key.as_ref() == b"list" && a.value.as_ref() == b"true");
                stack.push(Frame {
                    name,
                    list,
                    children: Vec::new(),
                    text: String::new(),
                });
            }
            Event::Empty(start) => {
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                if let Some(parent) = stack.last_mut() {
                    parent.children.push((name, Json::String(String::new())));
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let text = t.unescape().map_err(|e| malformed(e.to_string()))?;
                    top.text.push_str(&text);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(_) => {
                let frame = stack
                    .pop()
                    .ok_or_else(|| malformed("unbalanced end tag".into()))?;
                let value = if frame.list {
                    Json::Array(frame.children.into_iter().map(|(_, v)| v).collect())
                } else if frame.children.is_empty() {
                    Json::String(frame.text)
                } else {
                    Json::Object(frame.children.into_iter().collect::<Map<_, _>>())
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push((frame.name, value)),
                    None => {
                        let mut root = Map::new();
                        root.insert(frame.name, value);
                        return Ok(Json::Object(root));
                    }
                }
            }
            Event::Eof => return Err(malformed("no root element".into())),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{write_error, write_success, Object, Value};

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let body = Object::new().field(
            "result",
            Object::new().field("alisp_code", 200i64).field(
                "ids",
                Value::List {
                    item: "number".into(),
                    items: vec![1i64.into()],
                },
            ),
        );
        for (format, simplify) in [
            (Format::Json, false),
            (Format::Json, true),
            (Format::Xml, false),
        ] {
            let text = write_success("alibaba.x", &body, "r1", format, simplify);
            let resp = read(&text, format, simplify).unwrap();
            assert_eq!(resp.request_id.as_deref(), Some("r1"));
            let code = &resp.body["result"]["alisp_code"];
            assert!(code == 200 || code == "200", "{text}");
        }
    }

    #[test]
    fn refuses_what_is_no_envelope() {
        let not_envelopes = [
            (Format::Json, r#"{"message":"upstream unavailable"}"#),
            (Format::Json, r#"{"status":"ok"}"#),
            (Format::Json, r#"{"time_get_response":{},"extra":1}"#),
            (Format::Json, r#"{"time_get_response":"text"}"#),
            (Format::Json, r#"{"_response":{}}"#),
            (Format::Json, "{}"),
            (Format::Json, "[]"),
            (Format::Json, "<html></html>"),
            (
                Format::Xml,
                r#"<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml">503</html>"#,
            ),
            (Format::Xml, "<time_get_response>text</time_get_response>"),
            (Format::Xml, "upstream unavailable"),
        ];
        for (format, body) in not_envelopes {
            assert!(
                matches!(read(body, format, false), Err(ReadError::Malformed(_))),
                "{body}"
            );
        }
        // Simplified, a success has no wrapper: only a failure status can tell it from other
        // JSON, and the reader has none.
        let simplified = read(r#"{"status":"ok"}"#, Format::Json, true).unwrap();
        assert_eq!(simplified.body["status"], "ok");
    }

    #[test]
    fn refuses_an_error_response_without_a_non_zero_integer_code() {
        let without = [
            (Format::Json, r#"{"error_response":"text"}"#),
            (Format::Json, r#"{"error_response":{"msg":"x"}}"#),
            (Format::Json, r#"{"error_response":{"code":0,"msg":"x"}}"#),
            (Format::Json, r#"{"error_response":{"code":1.5,"msg":"x"}}"#),
            (Format::Json, r#"{"error_response":{"code":-7,"msg":"x"}}"#),
            (
                Format::Json,
                r#"{"error_response":{"code":true,"msg":"x"}}"#,
            ),
            (Format::Json, r#"{"error_response":{"code":7},"extra":1}"#),
            (Format::Xml, "<error_response>text</error_response>"),
            (
                Format::Xml,
                "<error_response><code>0</code></error_response>",
            ),
        ];
        for (format, body) in without {
            for simplify in [false, true] {
                match read(body, format, simplify) {
                    Err(ReadError::Malformed(why)) => {
                        assert!(why.contains("error_response"), "{body}: {why}")
                    }
                    other => panic!("{body}: {other:?}"),
                }
            }
        }
        // The code's text form is read too, as Java and Python read it.
        match read(r#"{"error_response":{"code":"7"}}"#, Format::Json, true) {
            Err(ReadError::Top { error, .. }) => assert_eq!(error.code, 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_errors() {
        let err = TopError::invalid_signature();
        for format in [Format::Json, Format::Xml] {
            match read(&write_error(&err, "r2", format), format, false) {
                Err(ReadError::Top { error, request_id }) => {
                    assert_eq!(error, err);
                    assert_eq!(request_id.as_deref(), Some("r2"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
