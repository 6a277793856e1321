//! The method registry: each API's name, its top-level business parameters with their types and
//! required flags, whether it needs a user session, and the handler that serves it.
//!
//! The registry is generic over the handler type so this crate stays free of I/O; the server
//! plugs its async handlers in, a client can register `()`. Object parameters travel as one JSON
//! string and are typed [`ParamKind::Json`]; their inner fields are the API's own business.

use std::collections::HashMap;

use crate::error::TopError;
use crate::params::ParamSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    /// A 64-bit integer in decimal.
    Number,
    /// `true` / `false`, any case.
    Boolean,
    /// A JSON document (object parameters of the seed APIs).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSpec {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
    pub needs_session: bool,
}

impl MethodSpec {
    /// Checks the top-level business parameters: code 40 for a missing (or empty) required one,
    /// 41 for one of the wrong type. Inner fields of JSON parameters are left to the API.
    pub fn check_params(&self, params: &ParamSet) -> Result<(), TopError> {
        for spec in self.params {
            match params.get_non_empty(spec.name) {
                None if spec.required => {
                    return Err(TopError::missing_required_argument(spec.name))
                }
                None => {}
                Some(value) => {
                    let ok = match spec.kind {
                        ParamKind::String | ParamKind::Json => true,
                        ParamKind::Number => value.parse::<i64>().is_ok(),
                        ParamKind::Boolean => {
                            value.eq_ignore_ascii_case("true")
                                || value.eq_ignore_ascii_case("false")
                        }
                    };
                    if !ok {
                        return Err(TopError::invalid_argument(spec.name));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Method name → (spec, handler). Lookups of unknown names are an explicit `None` (code 22).
pub struct Registry<H> {
    methods: HashMap<&'static str, (MethodSpec, H)>,
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Self {
            methods: HashMap::new(),
        }
    }
}

impl<H> Registry<H> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, spec: MethodSpec, handler: H) {
        self.methods.insert(spec.name, (spec, handler));
    }

    pub fn get(&self, method: &str) -> Option<(&MethodSpec, &H)> {
        self.methods.get(method).map(|(s, h)| (s, h))
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.methods.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: MethodSpec = MethodSpec {
        name: "x",
        params: &[ParamSpec {
            name: "id",
            kind: ParamKind::Number,
            required: true,
        }],
        needs_session: false,
    };

    #[test]
    fn required_and_typed() {
        let mut p = ParamSet::new();
        assert_eq!(SPEC.check_params(&p).unwrap_err().code, 40);
        p.set("id", "");
        assert_eq!(SPEC.check_params(&p).unwrap_err().code, 40);
        p.set("id", "abc");
        let err = SPEC.check_params(&p).unwrap_err();
        assert_eq!((err.code, err.msg.as_str()), (41, "Invalid arguments:id"));
        p.set("id", "12");
        assert!(SPEC.check_params(&p).is_ok());
    }
}
