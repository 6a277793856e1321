//! NATS JetStream sinks: one subject per event type (`<subject_prefix>.<event type>`, by default
//! `topgate.events.trade.status_changed`), a stream covering `<subject_prefix>.>` created when
//! missing, and `<database instance>:<event id>` as `Nats-Msg-Id` (see [`message_id`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};

use super::dispatch::{Attempt, EventRecord};

pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_STREAM: &str = "TOPGATE_EVENTS";
pub const DEFAULT_SUBJECT_PREFIX: &str = "topgate.events";

/// What a NATS sink keeps in `sinks.config`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NatsConfig {
    #[serde(default = "default_stream")]
    pub stream: String,
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
}

fn default_stream() -> String {
    DEFAULT_STREAM.into()
}
fn default_prefix() -> String {
    DEFAULT_SUBJECT_PREFIX.into()
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            stream: default_stream(),
            subject_prefix: default_prefix(),
        }
    }
}

impl NatsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let bad_stream = |c: char| c.is_whitespace() || ".*>/\\".contains(c);
        if self.stream.is_empty() || self.stream.chars().any(bad_stream) {
            return Err(format!("invalid stream name {:?}", self.stream));
        }
        let bad_token =
            |t: &str| t.is_empty() || t.contains(['*', '>']) || t.contains(char::is_whitespace);
        if self.subject_prefix.split('.').any(bad_token) {
            return Err(format!("invalid subject prefix {:?}", self.subject_prefix));
        }
        Ok(())
    }

    pub fn subject(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.subject_prefix)
    }
}

/// The `Nats-Msg-Id` of an event: the same for every redelivery of it, so that JetStream drops
/// a repeated copy within the stream's duplicate window, and qualified by the database's
/// identity ([`super::database_instance`]) because event ids are unique only within one
/// database: with the bare id, the events of a second database publishing into the stream, or
/// of a sandbox recreated within the window, would be acknowledged as duplicates and dropped.
pub fn message_id(instance: &str, event_id: i64) -> String {
    format!("{instance}:{event_id}")
}

/// A connected JetStream context for one sink (clones share the connection).
#[derive(Clone)]
pub struct Publisher {
    context: jetstream::Context,
    config: NatsConfig,
    /// The identity of the database the events come from.
    instance: Arc<str>,
}

impl Publisher {
    /// Connects and makes sure a stream captures the sink's subjects. A stream that cannot be
    /// created (e.g. another stream already covers the subjects) is logged, not fatal: the
    /// publish acknowledgement tells whether something stored the message.
    pub async fn connect(
        url: &str,
        config: NatsConfig,
        instance: Arc<str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            // A list is comma-separated (events.md); async-nats parses a lone string as one URL.
            .connect(url.split(',').map(str::trim).collect::<Vec<_>>())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let mut context = jetstream::new(client);
        context.set_timeout(timeout);
        let stream = jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            ..Default::default()
        };
        if let Err(e) = context.get_or_create_stream(stream).await {
            tracing::warn!(stream = %config.stream, error = %e, "cannot ensure the JetStream stream");
        }
        Ok(Self {
            context,
            config,
            instance,
        })
    }

    /// Publishes `event` and waits for JetStream's acknowledgement.
    pub async fn publish(&self, event: &EventRecord) -> Attempt {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            message_id(&self.instance, event.id).as_str(),
        );
        headers.insert("Topgate-Event-Type", event.event_type.as_str());
        let subject = self.config.subject(&event.event_type);
        let body = super::webhook::body(event);
        let ack = match self
            .context
            .publish_with_headers(subject, headers, body.into())
            .await
        {
            Ok(future) => future.await,
            Err(e) => return Attempt::failed(None, format!("publish failed: {e}")),
        };
        match ack {
            Ok(ack) if ack.duplicate => Attempt::duplicate(),
            Ok(_) => Attempt::delivered(None),
            // The stream was not created because one of its name exists with other subjects
            // (say, made by a sink with another prefix): say what to change, for the operator
            // who reads the sink's last error.
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                Attempt::failed(
                    None,
                    format!(
                        "no JetStream stream takes {}.> (the stream {} exists with other subjects?): \
                         give the sink a stream of its own, or add the subjects to that stream",
                        self.config.subject_prefix, self.config.stream
                    ),
                )
            }
            Err(e) => Attempt::failed(None, format!("no JetStream acknowledgement: {e}")),
        }
    }
}
