//! The platform error catalogue: codes and the wire messages of the classic TOP gateway.
//!
//! Every failure a gateway answers with `error_response` is a [`TopError`]. Messages are the
//! lowercase wire forms clients have always seen (`Invalid signature`, `Invalid app Key` …);
//! codes 40 and 41 append the parameter name after a colon, as the real gateway does.

use std::fmt;

/// The code used for bad business parameters of the seed APIs, as their pages show (`50`,
/// `Remote service error`, `isv.invalid-parameter`). One constant, so it can become 15.
pub const BUSINESS_PARAM_ERROR_CODE: u32 = 50;
/// The sub_msg prefix of every bad-business-parameter error.
pub const INVALID_PARAM_PREFIX: &str = "非法参数";

/// One `error_response`, without its `request_id` (the envelope adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopError {
    pub code: u32,
    pub msg: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
}

impl fmt::Display for TopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if let Some(sc) = &self.sub_code {
            write!(f, "; {sc}")?;
        }
        if let Some(sm) = &self.sub_msg {
            write!(f, ": {sm}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TopError {}

/// The wire message of a platform code.
pub fn wire_msg(code: u32) -> &'static str {
    catalogued_msg(code).unwrap_or("Unknown error")
}

/// The wire message of a code of the platform's catalogue; `None` for any other code.
pub fn catalogued_msg(code: u32) -> Option<&'static str> {
    Some(match code {
        3 => "Upload fail",
        7 => "App Call Limited",
        9 => "Http action not allowed",
        10 => "Service currently unavailable",
        11 => "Insufficient isv permissions",
        12 => "Insufficient user permissions",
        15 | 50 => "Remote service error",
        21 => "Missing method",
        22 => "Invalid method",
        23 => "Invalid format",
        24 => "Missing signature",
        25 => "Invalid signature",
        26 => "Missing session",
        27 => "Invalid session",
        28 => "Missing app key",
        29 => "Invalid app Key",
        30 => "Missing timestamp",
        31 => "Invalid timestamp",
        32 => "Missing version",
        33 => "Invalid version",
        34 => "Unsupported version",
        40 => "Missing required arguments",
        41 => "Invalid arguments",
        43 => "parameter error",
        47 => "Invalid encoding",
        _ => return None,
    })
}

impl TopError {
    pub fn new(code: u32) -> Self {
        Self {
            code,
            msg: wire_msg(code).to_string(),
            sub_code: None,
            sub_msg: None,
        }
    }

    pub fn with_sub(mut self, sub_code: impl Into<String>, sub_msg: impl Into<String>) -> Self {
        self.sub_code = Some(sub_code.into());
        self.sub_msg = Some(sub_msg.into());
        self
    }

    pub fn with_sub_msg(mut self, sub_msg: impl Into<String>) -> Self {
        self.sub_msg = Some(sub_msg.into());
        self
    }

    pub fn missing_method() -> Self {
        Self::new(21)
    }
    pub fn invalid_method(method: &str) -> Self {
        Self::new(22).with_sub_msg(format!("method {method} does not exist"))
    }
    pub fn invalid_format(format: &str) -> Self {
        Self::new(23).with_sub_msg(format!("format {format} is not json or xml"))
    }
    pub fn missing_signature() -> Self {
        Self::new(24)
    }
    pub fn invalid_signature() -> Self {
        Self::new(25)
    }
    pub fn unknown_sign_method(name: &str) -> Self {
        Self::new(25).with_sub_msg(format!(
            "sign_method {name} is not supported: use md5, hmac or hmac-sha256"
        ))
    }
    pub fn missing_session() -> Self {
        Self::new(26)
    }
    pub fn invalid_session() -> Self {
        Self::new(27).with_sub("invalid-sessionkey", "SessionKey非法")
    }
    pub fn missing_app_key() -> Self {
        Self::new(28)
    }
    pub fn invalid_app_key() -> Self {
        Self::new(29).with_sub("isv.appkey-not-exists", "app key不存在或已停用")
    }
    pub fn missing_timestamp() -> Self {
        Self::new(30)
    }
    pub fn invalid_timestamp(detail: impl Into<String>) -> Self {
        Self::new(31).with_sub("isv.timestamp-limit-error", detail)
    }
    pub fn missing_version() -> Self {
        Self::new(32)
    }
    pub fn invalid_version() -> Self {
        Self::new(33)
    }
    pub fn unsupported_version() -> Self {
        Self::new(34)
    }
    pub fn insufficient_isv_permissions(method: &str) -> Self {
        Self::new(11).with_sub(
            "isv.permission-api-package-limit",
            format!("app has no permission to call {method}"),
        )
    }
    pub fn app_call_limited(retry_after_secs: u64) -> Self {
        Self::new(7).with_sub(
            "accesscontrol.limited-by-app-api-access-count",
            format!("This ban will last for {retry_after_secs} more seconds"),
        )
    }
    pub fn invalid_encoding(detail: impl Into<String>) -> Self {
        Self::new(47).with_sub_msg(detail)
    }
    /// Code 40: the parameter name is part of `msg`.
    pub fn missing_required_argument(name: &str) -> Self {
        Self {
            code: 40,
            msg: format!("Missing required arguments:{name}"),
            sub_code: Some(format!("isv.missing-parameter:{name}")),
            sub_msg: None,
        }
    }
    /// Code 41: the parameter name is part of `msg`.
    pub fn invalid_argument(name: &str) -> Self {
        Self {
            code: 41,
            msg: format!("Invalid arguments:{name}"),
            sub_code: Some(format!("isv.invalid-parameter:{name}")),
            sub_msg: None,
        }
    }
    /// A business field is missing: code 50, `isv.missing-parameter`, `非法参数: <path> is required`.
    pub fn business_missing(path: &str) -> Self {
        Self::new(BUSINESS_PARAM_ERROR_CODE).with_sub(
            "isv.missing-parameter",
            format!("{INVALID_PARAM_PREFIX}: {path} is required"),
        )
    }
    /// A business field is malformed: code 50, `isv.invalid-parameter`, `非法参数: <path> <why>`.
    pub fn business_invalid(path: &str, why: &str) -> Self {
        Self::new(BUSINESS_PARAM_ERROR_CODE).with_sub(
            "isv.invalid-parameter",
            format!("{INVALID_PARAM_PREFIX}: {path} {why}"),
        )
    }
    /// An unexpected server failure; details stay in the log, tied by request_id.
    pub fn internal() -> Self {
        Self::new(15).with_sub("isp.unknown-error", "系统繁忙，请稍后重试")
    }
    pub fn service_unavailable() -> Self {
        Self::new(10).with_sub("isp.service-unavailable", "服务暂时不可用")
    }
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(43).with_sub(
            "isv.request-too-large",
            format!("request body exceeds {limit} bytes"),
        )
    }
}
