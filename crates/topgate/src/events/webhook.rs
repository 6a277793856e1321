//! Webhook sinks: the JSON body of an event, its HMAC-SHA256 signature, and one HTTP attempt.
//!
//! The signature covers `<timestamp>.<body>` so a captured request cannot be replayed later
//! with a fresh timestamp; receivers check it with [`signature`] (see `docs/events.md`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::dispatch::{Attempt, EventRecord};

pub const HEADER_EVENT_ID: &str = "X-Topgate-Event-Id";
pub const HEADER_TIMESTAMP: &str = "X-Topgate-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Topgate-Signature";
pub const HEADER_EVENT_TYPE: &str = "X-Topgate-Event-Type";
/// The database's identity ([`super::database_instance`]): event ids are unique only within
/// one database, so a receiver of several deployments keys its de-duplication on both.
pub const HEADER_DATABASE_INSTANCE: &str = "X-Topgate-Database-Instance";

/// The body every sink receives: `{"id","type","entity","payload","created_at"}`.
pub fn body(event: &EventRecord) -> String {
    let payload: Value = serde_json::from_str(&event.payload)
        .unwrap_or_else(|_| Value::String(event.payload.clone()));
    json!({
        "id": event.id,
        "type": event.event_type,
        "entity": event.entity,
        "payload": payload,
        "created_at": event.created_at,
    })
    .to_string()
}

/// Lowercase hex HMAC-SHA256 with key `secret` over `<timestamp>.<body>`.
pub fn signature(secret: &str, timestamp_secs: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The HTTP client of every webhook: no redirects (a 3xx is not an acknowledgement), a hard
/// timeout per attempt.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("topgate-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// POSTs `event` of the database `instance` to `url`; a 2xx answer is an acknowledgement.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    instance: &str,
    event: &EventRecord,
) -> Attempt {
    let body = body(event);
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header(HEADER_EVENT_ID, event.id.to_string())
        .header(HEADER_EVENT_TYPE, event.event_type.as_str())
        .header(HEADER_DATABASE_INSTANCE, instance)
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_SIGNATURE, signature(secret, timestamp, &body))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            // Drain a little of the body so the connection can be reused; its content is
            // the receiver's business and is not kept.
            let _ = tokio::time::timeout(Duration::from_secs(1), response.bytes()).await;
            if status.is_success() {
                Attempt::delivered(Some(i64::from(status.as_u16())))
            } else {
                Attempt::failed(
                    Some(i64::from(status.as_u16())),
                    format!("HTTP {}", status.as_u16()),
                )
            }
        }
        Err(e) => Attempt::failed(None, describe(&e)),
    }
}

/// An error text without the URL (whose query string may carry a receiver's token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"key", b"1700000000.{}", sha256).
        assert_eq!(
            signature("key", 1_700_000_000, "{}"),
            "9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
