//! The Taobao Open Platform (TOP) `router/rest` wire protocol, with no I/O.
//!
//! Shared by the `topgate` server and the `top-sdk` client so that both sides agree to the byte:
//! the merged parameter set and its parsers ([`params`]), the canonical string and the three
//! signers ([`sign`]), timestamps in GMT+8 or epoch milliseconds ([`timestamp`]), the platform
//! error catalogue ([`error`]), the method registry ([`registry`]) and the JSON/XML envelope
//! writer and reader ([`envelope`], [`reader`]).

pub mod envelope;
pub mod error;
pub mod params;
pub mod reader;
pub mod registry;
pub mod sign;
pub mod timestamp;

pub use envelope::{response_name, Format, Object, Value};
pub use error::TopError;
pub use params::ParamSet;
pub use sign::SignMethod;
