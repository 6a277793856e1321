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
pub fn read(body: &str, format: Format, simplify: bool) -> Result<Response, ReadError> {
    let root = match format {
        Format::Json => {
            serde_json::from_str::<Json>(body).map_err(|e| ReadError::Malformed(e.to_string()))?
        }
        Format::Xml => xml_to_json(body)?,
    };
    let Json::Object(mut map) = root else {
        return Err(ReadError::Malformed("root is not an object".into()));
    };
    if let Some(err) = map.remove("error_response") {
        return Err(top_error(&err));
    }
    let mut inner = if simplify && format == Format::Json {
        Json::Object(map)
    } else {
        map.into_iter()
            .next()
            .map(|(_, v)| v)
            .ok_or_else(|| ReadError::Malformed("empty response".into()))?
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

fn top_error(err: &Json) -> ReadError {
    let text = |k: &str| -> Option<String> {
        err.get(k).and_then(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let code = text("code").and_then(|c| c.parse().ok()).unwrap_or(0);
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
