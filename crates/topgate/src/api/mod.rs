//! The TOP methods topgate serves: their registry entries and the input helpers they share.
//!
//! Each API module owns its business rules and renders its own response object; shape errors
//! in an object parameter become code 50 (`isv.missing-parameter` / `isv.invalid-parameter`)
//! naming the field path (`param0.order_no`), business-state failures stay in the API's body.

pub mod carrier;
pub mod diantao;
pub mod idempotency;
pub mod lianbei;
pub mod masking;
pub mod opentrade;
pub mod send_good_param;
pub mod time_get;

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use top_protocol::registry::Registry;
use top_protocol::TopError;

use crate::gateway::Handler;

pub fn registry() -> Registry<Handler> {
    let mut registry: Registry<Handler> = Registry::new();
    registry.register(time_get::SPEC, time_get::handle);
    registry.register(carrier::SPEC, carrier::handle);
    registry.register(lianbei::SPEC, lianbei::handle);
    registry.register(diantao::SPEC, diantao::handle);
    registry.register(opentrade::SPEC, opentrade::handle);
    registry
}

/// Every method name served, for granting all of them to an app.
pub fn all_methods() -> Vec<String> {
    let mut names: Vec<String> = registry().names().map(str::to_string).collect();
    names.sort();
    names
}

/// The fields of an object parameter, read with their wire path for error messages.
pub struct Fields {
    name: &'static str,
    map: Map<String, Json>,
}

impl Fields {
    /// Parses the object parameter `name`; missing or empty → `isv.missing-parameter`.
    pub fn parse(params: &top_protocol::ParamSet, name: &'static str) -> Result<Self, TopError> {
        let raw = params
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| TopError::business_missing(name))?;
        match serde_json::from_str::<Json>(raw) {
            Ok(Json::Object(map)) => Ok(Self { name, map }),
            Ok(_) => Err(TopError::business_invalid(name, "is not a JSON object")),
            // serde_json's reason names the place (a number out of range, a stray character),
            // which "not an object" would hide in a document that otherwise is one.
            Err(e) => Err(TopError::business_invalid(
                name,
                &format!("is not valid JSON: {e}"),
            )),
        }
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    pub fn invalid(&self, key: &str, why: &str) -> TopError {
        TopError::business_invalid(&self.path(key), why)
    }

    pub fn missing(&self, key: &str) -> TopError {
        TopError::business_missing(&self.path(key))
    }

    fn raw(&self, key: &str) -> Option<&Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A string field; numbers and booleans are accepted as their text. Empty is absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, TopError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Json::String(s)) if s.is_empty() => Ok(None),
            // PostgreSQL text cannot hold U+0000 (the insert would fail as an internal error),
            // so no backend takes it.
            Some(Json::String(s)) if s.contains('\0') => {
                Err(self.invalid(key, "must not contain the character U+0000"))
            }
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(Json::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(self.invalid(key, "must be a string")),
        }
    }

    /// An optional string field of at most `max` characters.
    pub fn opt_str_max(&self, key: &str, max: usize) -> Result<Option<String>, TopError> {
        let value = self.opt_str(key)?;
        if let Some(v) = &value {
            check_len(self, key, v, max)?;
        }
        Ok(value)
    }

    pub fn req_str(&self, key: &str) -> Result<String, TopError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An integer from a JSON integer or a decimal string, never through floating point.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, TopError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Json::String(s)) if s.is_empty() => Ok(None),
            Some(Json::String(s)) => parse_i64(s)
                .map(Some)
                .ok_or_else(|| self.invalid(key, "must be an integer")),
            Some(Json::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "must be an integer")),
            Some(_) => Err(self.invalid(key, "must be an integer")),
        }
    }

    pub fn req_i64(&self, key: &str) -> Result<i64, TopError> {
        self.opt_i64(key)?.ok_or_else(|| self.missing(key))
    }

    /// A boolean from JSON `true`/`false` or the strings, any case.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, TopError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(Json::String(s)) if s.is_empty() => Ok(None),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(self.invalid(key, "must be true or false")),
        }
    }

    pub fn req_bool(&self, key: &str) -> Result<bool, TopError> {
        self.opt_bool(key)?.ok_or_else(|| self.missing(key))
    }
}

/// Decimal digits (optional leading `-`) into i64; `None` on anything else or overflow.
pub fn parse_i64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Checks a length in characters.
pub fn check_len(fields: &Fields, key: &str, value: &str, max: usize) -> Result<(), TopError> {
    if value.chars().count() > max {
        return Err(fields.invalid(key, &format!("must be at most {max} characters")));
    }
    Ok(())
}

/// `[A-Za-z0-9_-]` (plus `extra`), for codes and external ids.
pub fn is_code(value: &str, allow_dash: bool) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (allow_dash && b == b'-'))
}

/// Printable, without whitespace: for request serials.
pub fn is_token(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// A stable digest of a normalised payload, for idempotency comparisons: SHA-256 of its compact
/// JSON text, in lowercase hex. Digests are stored, so this text must never change: a struct
/// passed here serialises exactly as the JSON object of its fields would (fields declared in
/// key order, as serde_json's map sorts them).
pub fn payload_hash(canonical: &impl serde::Serialize) -> String {
    let mut text = Vec::with_capacity(256);
    serde_json::to_writer(&mut text, canonical).expect("a JSON payload serialises");
    let mut hex = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(&text), &mut hex).expect("64 hex digits for 32 bytes");
    String::from_utf8_lossy(&hex).into_owned()
}
