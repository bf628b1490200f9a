//! Following the stream: each node reads every message from a sequence
//! number on into its own [`Feed`], in stream order, resuming by itself
//! after a lost connection or a restarted server.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer;
use futures_util::StreamExt;

use super::{Bus, BusError, event_seq, js_err};
use crate::event::Event;
use crate::feed::{CommittedBatch, Feed};
use crate::store::segment;

impl Bus {
    /// Reads the stream from `from` (a stream sequence) on, message by
    /// message, for as long as the returned stream is polled. Resumes by
    /// itself after a lost connection.
    pub async fn read_from(
        &self,
        from: u64,
    ) -> Result<impl futures_util::Stream<Item = Result<Delivered, BusError>> + use<>, BusError>
    {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(js_err("following the stream"))?;
        let messages = consumer
            .messages()
            .await
            .map_err(js_err("following the stream"))?;
        Ok(messages.map(|message| {
            let message = message.map_err(js_err("reading the stream"))?;
            let seq = message
                .info()
                .map_err(js_err("reading the stream"))?
                .stream_sequence;
            let events = segment::decode(&message.payload)
                .map_err(|reason| BusError::Corrupt { seq, reason })?;
            Ok(Delivered {
                stream_seq: seq,
                events,
                bytes: message.payload.len(),
            })
        }))
    }

    /// The first and last stream sequences the stream holds (the last is 0
    /// when it never held any).
    pub async fn seq_span(&self) -> Result<(u64, u64), BusError> {
        let mut stream = self.stream.clone();
        let info = stream.info().await.map_err(js_err("reading the stream"))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// Feeds every message from `from` on into `feed`, in stream order, until
    /// `stop` resolves. Runs as a task; gaps in the connection are resumed
    /// from the last message given.
    pub async fn follow(
        self: Arc<Self>,
        from: u64,
        feed: Arc<Feed>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut next = from.max(1);
        let mut warned = false;
        loop {
            // Watched from before the consumer is made: a reconnect while it is
            // being made may have lost it, and must not go unseen.
            let mut reconnected = self.connects.subscribe();
            let messages = tokio::select! {
                _ = &mut stop => return,
                m = self.read_from(next) => m,
            };
            match messages {
                Ok(messages) => {
                    tokio::pin!(messages);
                    loop {
                        let item = tokio::select! {
                            _ = &mut stop => return,
                            // A consumer may not survive the server's restart:
                            // start a new one from the next message.
                            _ = reconnected.changed() => break,
                            item = messages.next() => item,
                        };
                        match item {
                            Some(Ok(delivered)) => {
                                warned = false;
                                let seq = delivered.stream_seq;
                                if seq > next && next > 1 {
                                    self.missed.store(true, Ordering::Relaxed);
                                    tracing::error!(
                                        "this node's live view missed stream messages {next}..{seq}: they were loaded into ClickHouse and dropped from the stream while it lagged. Restart the node: it rebuilds its live view from ClickHouse (queries that read ClickHouse are not affected)"
                                    );
                                }
                                next = seq + 1;
                                feed.publish(&Arc::new(delivered.batch()));
                                self.followed.send_replace(seq);
                            }
                            Some(Err(BusError::Corrupt { seq, reason })) => {
                                tracing::error!("skipping stream message {seq}: {reason}");
                                next = seq + 1;
                                self.followed.send_replace(seq);
                            }
                            Some(Err(e)) => {
                                if !warned {
                                    tracing::warn!("following the bus: {e}; resuming");
                                    warned = true;
                                }
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!("cannot follow the bus: {e}; retrying");
                        warned = true;
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Waits until this node's feed has been given the message at stream
    /// sequence `seq`, for at most `limit`; answers whether it has.
    pub async fn wait_followed(&self, seq: u64, limit: Duration) -> bool {
        let mut rx = self.followed.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|at| *at >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether this node's feed skipped messages (see `follow`).
    pub fn missed_messages(&self) -> bool {
        self.missed.load(Ordering::Relaxed)
    }

    /// The last stream sequence this node's feed was given.
    pub fn followed(&self) -> u64 {
        *self.followed.borrow()
    }
}

/// A message read from the stream.
pub struct Delivered {
    pub stream_seq: u64,
    pub events: Vec<Event>,
    /// The encoded size.
    pub bytes: usize,
}

impl Delivered {
    fn batch(self) -> CommittedBatch {
        CommittedBatch {
            first_seq: event_seq(self.stream_seq, 0),
            events: self.events,
        }
    }
}
