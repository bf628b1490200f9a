//! The bus between `serve` nodes: NATS JetStream.
//!
//! Every acknowledged event is a message in one stream ([`STREAM`]): a node
//! publishes each ingest request's events as one message (the store's segment
//! encoding) and answers 2xx once JetStream acknowledged it. Every node then
//! follows the stream ([`Bus::follow`]) into its own [`crate::feed::Feed`], so its engine
//! and WebSocket hub see every node's events, its own included, in stream
//! order. The ClickHouse loader ([`crate::store::clickhouse`]) is one more
//! reader of the same stream.
//!
//! Event sequence numbers are cluster-wide: the `i`-th event of the message
//! at stream sequence `s` is `s << INDEX_BITS | i` ([`event_seq`]), so the
//! events of one request are consecutive and every later request's are
//! larger.
//!
//! Key-value buckets hold what nodes share: the answers to idempotency keys
//! (an hour), the loader's lease and its progress. Buckets are created as
//! plain streams, the way the KV protocol lays them out, because the client's
//! own bucket creation asks the server for account fields that NATS 2.9 does
//! not send.

use std::sync::Arc;
use std::time::Duration;

mod alerts;
mod follow;
mod shared;

pub use alerts::NatsBook;
pub use follow::Delivered;

use async_nats::jetstream::{self, kv, object_store, stream};
use async_nats::{HeaderMap, HeaderValue};
use thiserror::Error;
use tokio::sync::watch;

use crate::event::Event;
use crate::store::segment;
use crate::store::{Appended, IdempotencyKey};

/// The stream holding every acknowledged event.
pub const STREAM: &str = "RTA_EVENTS";
const SUBJECT: &str = "rta.events";
/// Bits of an event sequence number that number the events of one message.
pub const INDEX_BITS: u32 = 21;
/// Events one ingest request may carry on a cluster (2,097,152).
pub const MAX_EVENTS_PER_MESSAGE: usize = 1 << INDEX_BITS;
/// How long an idempotency key's answer is kept.
const KEYS_KEPT: Duration = Duration::from_secs(3600);
/// JetStream's own duplicate window (`Nats-Msg-Id`): covers two nodes
/// publishing the same key before either stored its answer.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// A lease not renewed for this long passes to another node.
pub const LEASE_TTL: Duration = Duration::from_secs(4);

const KEYS_BUCKET: &str = "rta_keys";
const LEASE_BUCKET: &str = "rta_lease";
const PROGRESS_BUCKET: &str = "rta_progress";
const STATE_BUCKET: &str = "rta_state";
const ALERTS_BUCKET: &str = "rta_alerts";

/// The sequence number of the `index`-th event of the message at stream
/// sequence `stream_seq`.
pub fn event_seq(stream_seq: u64, index: u64) -> u64 {
    (stream_seq << INDEX_BITS) | index
}

/// The stream sequence of the message that carried the event numbered `seq`.
pub fn stream_seq_of(seq: u64) -> u64 {
    seq >> INDEX_BITS
}

#[derive(Debug, Error)]
pub enum BusError {
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("NATS JetStream: {0}")]
    JetStream(String),
    /// Nothing was sent: the connection is down.
    #[error("NATS at {0} is unreachable, so nothing was stored; retry once it is back")]
    Unreachable(String),
    /// Sent, but not acknowledged: it may be stored or not.
    #[error(
        "NATS JetStream did not acknowledge the events ({0}); they may or may not be stored: retry with the same Idempotency-Key to be sure"
    )]
    Unacknowledged(String),
    /// More than NATS takes in one message; nothing was sent.
    #[error(
        "the request's events take {bytes} bytes encoded, more than the {max} bytes NATS takes in one message (its max_payload): nothing was stored; send them in smaller requests"
    )]
    TooLarge { bytes: usize, max: usize },
    #[error("a message in the stream is unreadable (stream sequence {seq}): {reason}")]
    Corrupt { seq: u64, reason: String },
}

fn js_err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> BusError + '_ {
    move |e| BusError::JetStream(format!("{what}: {e}"))
}

/// `nats://HOST:PORT`, as given to `--bus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusUrl(String);

impl BusUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text).map_err(|e| {
            format!("--bus `{text}` is not a URL ({e}); give one such as nats://127.0.0.1:4222")
        })?;
        if url.scheme() != "nats" {
            return Err(format!(
                "--bus `{text}`: the bus is NATS JetStream, given as nats://HOST:PORT (such as nats://127.0.0.1:4222)"
            ));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
            format!("--bus `{text}` names no host; give one such as nats://127.0.0.1:4222")
        })?;
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            return Err(format!(
                "--bus `{text}`: give only nats://HOST:PORT, without a path or parameters"
            ));
        }
        let port = url.port().unwrap_or(4222);
        let auth = match (url.username(), url.password()) {
            ("", _) => String::new(),
            (user, Some(pass)) => format!("{user}:{pass}@"),
            (user, None) => format!("{user}@"),
        };
        Ok(Self(format!("nats://{auth}{host}:{port}")))
    }

    /// The address without credentials, for messages and logs.
    pub fn redacted(&self) -> String {
        match self.0.split_once('@') {
            Some((_, rest)) => format!("nats://{rest}"),
            None => self.0.clone(),
        }
    }
}

/// A connection to the bus, shared by a node's parts.
pub struct Bus {
    url: BusUrl,
    /// Counts connections made: a change means the connection came back.
    connects: Arc<watch::Sender<u64>>,
    js: jetstream::Context,
    stream: stream::Stream,
    keys: kv::Store,
    lease: kv::Store,
    progress: kv::Store,
    /// Alert rules, their states and the notifications owed.
    alerts: kv::Store,
    /// Large shared values (the engine's saved state).
    state: object_store::ObjectStore,
    /// This process among all that ever had this node id: a restarted node
    /// must not take the lease its previous run held for its own.
    instance: Arc<str>,
    /// The last stream sequence this node's feed has been given.
    followed: watch::Sender<u64>,
    /// Set once the feed skipped messages (dropped from the stream while this
    /// node lagged): its live view lacks them, and is not to be saved.
    missed: std::sync::atomic::AtomicBool,
}

/// A stored answer to an idempotency key.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyAnswer {
    first_seq: u64,
    accepted: u64,
    note: String,
}

impl Bus {
    /// Connects and creates the stream and buckets when missing.
    pub async fn connect(url: &BusUrl, node_id: &str) -> Result<Self, BusError> {
        let connects = Arc::new(watch::channel(0u64).0);
        let on_event = {
            let (connects, url) = (connects.clone(), url.redacted());
            move |event: async_nats::Event| {
                let (connects, url) = (connects.clone(), url.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            if *connects.borrow() > 0 {
                                tracing::info!("reconnected to NATS at {url}");
                            }
                            connects.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("lost NATS at {url}; reconnecting");
                        }
                        other => tracing::debug!("NATS: {other}"),
                    }
                }
            }
        };
        let client = async_nats::ConnectOptions::new()
            .name(format!("rta {node_id}"))
            .connection_timeout(Duration::from_secs(5))
            // The first attempt (of a start or of a reconnect) at once, then
            // back within a quarter second of NATS, however long it was away.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(50 * attempts.saturating_sub(1).min(5) as u64)
            })
            .event_callback(on_event)
            .connect(url.0.as_str());
        // The first connection is awaited for a bounded time: a wrong address
        // is reported at start, not retried in silence.
        let client = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .map_err(|_| BusError::Connect {
                url: url.redacted(),
                reason: "no answer within 10 s (is nats-server running with -js?)".into(),
            })?
            .map_err(|e| BusError::Connect {
                url: url.redacted(),
                reason: e.to_string(),
            })?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec![SUBJECT.into()],
                duplicate_window: DUPLICATE_WINDOW,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| match e.kind() {
                jetstream::context::CreateStreamErrorKind::JetStreamUnavailable => {
                    BusError::Connect {
                        url: url.redacted(),
                        reason: "JetStream is not enabled (start nats-server with -js)".into(),
                    }
                }
                _ => BusError::JetStream(format!("cannot create the stream {STREAM}: {e}")),
            })?;
        let (keys, lease, progress, alerts, state) = tokio::try_join!(
            bucket(&js, KEYS_BUCKET, Some(KEYS_KEPT)),
            bucket(&js, LEASE_BUCKET, Some(LEASE_TTL)),
            bucket(&js, PROGRESS_BUCKET, None),
            bucket(&js, ALERTS_BUCKET, None),
            object_bucket(&js, STATE_BUCKET),
        )?;
        Ok(Self {
            url: url.clone(),
            connects,
            js,
            stream,
            keys,
            lease,
            progress,
            alerts,
            state,
            instance: format!("{node_id}/{:016x}", rand::random::<u64>()).into(),
            followed: watch::channel(0).0,
            missed: Default::default(),
        })
    }

    pub fn url(&self) -> &BusUrl {
        &self.url
    }

    /// Makes `events` durable in the stream. With a key already answered
    /// (by any node, within the hour), nothing is published and the first
    /// answer comes back.
    pub async fn publish(
        &self,
        events: &[Event],
        key: Option<&IdempotencyKey>,
    ) -> Result<Appended, BusError> {
        let kv_key = key.map(|k| key_name(&k.key));
        if let Some(name) = &kv_key
            && let Some(answer) = self.answer_of(name).await?
        {
            return Ok(Appended::AlreadyStored {
                first_seq: answer.first_seq,
                accepted: answer.accepted,
                note: answer.note,
            });
        }
        // While disconnected the client would queue the message and send it
        // on reconnecting, after its answer said 503: refuse it instead.
        if !self.is_connected() {
            return Err(BusError::Unreachable(self.url.redacted()));
        }
        let chunk = segment::encode(events);
        let max = self.js.client().server_info().max_payload;
        // Headers and the subject take a little of it.
        if max > 0 && chunk.data.len() + 512 > max {
            return Err(BusError::TooLarge {
                bytes: chunk.data.len(),
                max,
            });
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            headers.insert("Nats-Msg-Id", HeaderValue::from(key.key.as_str()));
        }
        let ack = self
            .js
            .publish_with_headers(SUBJECT, headers, chunk.data.into())
            .await
            .map_err(|e| BusError::Unacknowledged(e.to_string()))?
            .await
            .map_err(|e| BusError::Unacknowledged(e.to_string()))?;
        let first_seq = event_seq(ack.sequence, 0);
        let accepted = events.len() as u64;
        let Some(key) = key else {
            return Ok(Appended::Stored { first_seq });
        };
        if ack.duplicate {
            // Another node published this key a moment ago.
            return Ok(Appended::AlreadyStored {
                first_seq,
                accepted,
                note: key.note.clone(),
            });
        }
        let answer = KeyAnswer {
            first_seq,
            accepted,
            note: key.note.clone(),
        };
        if let (Some(name), Ok(bytes)) = (kv_key, serde_json::to_vec(&answer))
            && let Err(e) = self.keys.put(name, bytes.into()).await
        {
            // The events are durable; only a retry after JetStream's own
            // two-minute window would store them again.
            tracing::warn!("could not keep the answer to an idempotency key: {e}");
        }
        Ok(Appended::Stored { first_seq })
    }

    async fn answer_of(&self, name: &str) -> Result<Option<KeyAnswer>, BusError> {
        let entry = self
            .keys
            .get(name)
            .await
            .map_err(js_err("reading an idempotency key"))?;
        Ok(entry.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Whether the connection to NATS is up now.
    pub fn is_connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }
}

/// A key as the KV bucket allows it (letters, digits, `-_=./`): the client's
/// key in hex, so that different keys never share a name.
fn key_name(key: &str) -> String {
    use std::fmt::Write;
    key.bytes()
        .fold(String::with_capacity(2 * key.len()), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// A key-value bucket laid out as the KV protocol expects (see the module's
/// note on why it is not created with the client's own call).
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Option<Duration>,
) -> Result<kv::Store, BusError> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: max_age.unwrap_or_default(),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| BusError::JetStream(format!("cannot create the bucket {name}: {e}")))?;
    js.get_key_value(name)
        .await
        .map_err(|e| BusError::JetStream(format!("cannot open the bucket {name}: {e}")))
}

async fn object_bucket(
    js: &jetstream::Context,
    name: &str,
) -> Result<object_store::ObjectStore, BusError> {
    if let Ok(bucket) = js.get_object_store(name).await {
        return Ok(bucket);
    }
    js.create_object_store(object_store::Config {
        bucket: name.into(),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| BusError::JetStream(format!("cannot create the bucket {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_pack_and_unpack() {
        let seq = event_seq(12345, 7);
        assert_eq!(stream_seq_of(seq), 12345);
        assert_eq!(seq & ((1 << INDEX_BITS) - 1), 7);
        assert!(event_seq(2, 0) > event_seq(1, MAX_EVENTS_PER_MESSAGE as u64 - 1));
    }

    #[test]
    fn bus_urls_are_checked() {
        assert_eq!(
            BusUrl::parse("nats://127.0.0.1:4333").unwrap().0,
            "nats://127.0.0.1:4333"
        );
        assert_eq!(
            BusUrl::parse("nats://localhost").unwrap().0,
            "nats://localhost:4222"
        );
        let with_auth = BusUrl::parse("nats://u:secret@h:1").unwrap();
        assert_eq!(with_auth.redacted(), "nats://h:1");
        for bad in ["http://h:4222", "nats://", "nats://h:1/x", "h:4222", ""] {
            assert!(BusUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_names_are_bucket_safe_and_distinct() {
        assert_eq!(key_name("a/b"), "612f62");
        assert_ne!(key_name("ab"), key_name("ba"));
        assert!(
            key_name("x:y?*>")
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        );
    }
}
