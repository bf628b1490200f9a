//! What a node stores in and hears from: the embedded SQLite store, or
//! ClickHouse with NATS JetStream for a cluster of nodes.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::models::NodeStatus;
use super::saved_state::{self, Loaded};
use super::{ClusterConfig, LiveEngine, ServeConfig};
use crate::bus::Bus;
use crate::feed::Feed;
use crate::store::Store;
use crate::store::alerts::{AlertBook, SqliteBook};
use crate::store::clickhouse::ClickHouseStore;
use crate::store::sqlite::SqliteStore;

/// The engine's saved state, in the bus's object bucket.
const ENGINE_STATE: &str = "engine";
/// How long a starting node waits to catch up with the stream before it answers.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub enum Backend {
    /// One node: the store publishes its commits to the feed itself.
    Sqlite(Arc<SqliteStore>),
    /// A node of a cluster: the feed follows the bus.
    Cluster {
        store: Arc<ClickHouseStore>,
        bus: Arc<Bus>,
        /// The stream message the engine was built up to at start.
        built_upto: u64,
    },
}

impl Backend {
    pub async fn open(config: &ServeConfig, feed: Arc<Feed>) -> anyhow::Result<Self> {
        match &config.cluster {
            None => {
                let dir = config.data_dir.clone();
                let store =
                    tokio::task::spawn_blocking(move || SqliteStore::open(&dir, feed)).await??;
                Ok(Self::Sqlite(Arc::new(store)))
            }
            Some(ClusterConfig {
                store,
                bus,
                node_id,
                bus_keep,
            }) => {
                let bus = Arc::new(Bus::connect(bus, node_id).await?);
                let store = ClickHouseStore::open(store.clone(), bus.clone(), *bus_keep)
                    .await
                    .context("cannot start on ClickHouse")?;
                let built_upto = store.loaded();
                Ok(Self::Cluster {
                    store: Arc::new(store),
                    bus,
                    built_upto,
                })
            }
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => store.clone(),
            Self::Cluster { store, .. } => store.clone(),
        }
    }

    /// Where alert rules, their states and owed notifications are kept:
    /// next to the events, or in NATS for a cluster.
    pub async fn alert_book(&self, config: &ServeConfig) -> anyhow::Result<Arc<dyn AlertBook>> {
        match self {
            Self::Sqlite(_) => {
                let dir = config.data_dir.clone();
                let book = tokio::task::spawn_blocking(move || SqliteBook::open(&dir)).await??;
                Ok(Arc::new(book))
            }
            Self::Cluster { bus, .. } => Ok(Arc::new(bus.alert_book())),
        }
    }

    /// Which store: `sqlite` or `clickhouse`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Cluster { .. } => "clickhouse",
        }
    }

    /// Where events are kept, for the start-up log.
    pub fn describe(&self, config: &ServeConfig) -> String {
        match self {
            Self::Sqlite(_) => config.data_dir.display().to_string(),
            Self::Cluster { store, bus, .. } => format!(
                "{} through {}",
                store.url().redacted(),
                bus.url().redacted()
            ),
        }
    }

    /// What a cluster node runs besides the server: the feed following the
    /// bus from where the engine was built, and the loader into ClickHouse.
    pub fn start(&self, feed: Arc<Feed>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let Self::Cluster {
            store,
            bus,
            built_upto,
        } = self
        else {
            return Vec::new();
        };
        let stopped = {
            let stop = stop.clone();
            move || {
                let mut stop = stop.clone();
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                }
            }
        };
        vec![
            tokio::spawn(bus.clone().follow(built_upto + 1, feed, stopped())),
            tokio::spawn(store.summaries(stop.clone())),
            tokio::spawn(store.loader().run(stop)),
        ]
    }

    /// Waits, at most [`CATCH_UP_WAIT`], until the feed has given the engine
    /// every stream message there was when it was called: a node that starts
    /// answers as the others do from its first answer.
    pub async fn catch_up(&self) {
        let Self::Cluster {
            bus, built_upto, ..
        } = self
        else {
            return;
        };
        match bus.seq_span().await {
            Ok((_, last)) if last > *built_upto => {
                if !bus.wait_followed(last, CATCH_UP_WAIT).await {
                    tracing::warn!(
                        "the live view has not caught up with the stream (message {last}) within {} s; answering meanwhile",
                        CATCH_UP_WAIT.as_secs()
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "cannot read where the stream ends ({e}); answering before the live view caught up with it"
            ),
        }
    }

    /// The engine, brought up to date with the store: from the saved state
    /// (next to the SQLite database; in NATS for a cluster, saved by the
    /// loading node) and the events stored after it.
    pub async fn load_engine(&self, config: &ServeConfig) -> anyhow::Result<Loaded> {
        let engine_config = config.engine;
        match self {
            Self::Sqlite(store) => {
                let (store, dir) = (store.clone(), config.data_dir.clone());
                tokio::task::spawn_blocking(move || saved_state::load(&dir, &*store, engine_config))
                    .await?
            }
            Self::Cluster { store, bus, .. } => {
                let saved = bus.load(ENGINE_STATE).await.unwrap_or_else(|e| {
                    tracing::warn!("cannot read the saved engine state ({e}); reading the store");
                    None
                });
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    saved_state::load_from(saved, &*store, engine_config)
                })
                .await?
            }
        }
    }

    /// Saves the engine's state. On a cluster only the loading node saves
    /// (one copy for all, in NATS), or any node as it stops (`stopping`).
    pub async fn save_engine(
        &self,
        config: &ServeConfig,
        engine: &Arc<LiveEngine>,
        stopping: bool,
    ) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(store) => {
                let (store, live, dir) = (store.clone(), engine.clone(), config.data_dir.clone());
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let mark = store.mark()?;
                    let bytes = live.with(|engine| engine.save_state());
                    saved_state::save(&dir, &bytes, mark)?;
                    Ok(())
                })
                .await?
            }
            Self::Cluster { store, bus, .. } => {
                // A live view that missed messages must not be the one others start from.
                if !(store.is_loading() || stopping) || bus.missed_messages() {
                    return Ok(());
                }
                let live = engine.clone();
                let bytes =
                    tokio::task::spawn_blocking(move || live.with(|engine| engine.save_state()))
                        .await?;
                bus.save(ENGINE_STATE, &bytes).await?;
                Ok(())
            }
        }
    }

    /// This node's status, for `/api/status`.
    pub async fn status(&self, config: &ServeConfig, events: u64) -> NodeStatus {
        let mut status = NodeStatus {
            node_id: config.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            store: self.kind().into(),
            location: config.data_dir.display().to_string(),
            bus: None,
            events,
            followed: None,
            loaded: None,
            loading: None,
            summarised: None,
        };
        if let Self::Cluster { store, bus, .. } = self {
            status.location = store.url().redacted();
            status.bus = Some(bus.url().redacted());
            status.followed = Some(bus.followed());
            status.loaded = Some(store.loaded());
            status.loading = Some(store.is_loading());
            status.summarised = store.summarised().await;
        }
        status
    }
}
