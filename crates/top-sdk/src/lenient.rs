//! Deserializers that take a number or boolean from its JSON form or from the text XML carries.

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use serde_json::Value;

pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| D::Error::custom("not an integer")),
        Value::String(s) => s.parse().map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(D::Error::custom(format!("expected a boolean, got {other}"))),
    }
}
