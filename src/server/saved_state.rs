//! Saving the engine's state next to the database, so a restart reads only
//! the events committed after the last save instead of every event.
//!
//! The file is a cache: it is used only when it still matches the store
//! (same deletions, no events missing), and otherwise ignored and rebuilt.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::{Engine, EngineConfig};
use crate::event::Timestamp;
use crate::store::{Store, StoreMark};

const FILE: &str = "engine.snapshot";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// How the engine was brought up to date.
#[derive(Debug)]
pub struct Loaded {
    pub engine: Engine,
    /// Whether a saved state was used.
    pub from_saved_state: bool,
    /// Events read from the store on top of it.
    pub replayed: u64,
}

/// Loads the saved state if it matches the store, then applies every event
/// committed after it. Blocking.
pub fn load(dir: &Path, store: &dyn Store, config: EngineConfig) -> anyhow::Result<Loaded> {
    let mark = store.mark()?;
    let saved = std::fs::read(path(dir))
        .ok()
        .and_then(|bytes| decode(&bytes, mark, config));
    catch_up(saved, store, config)
}

/// Loads a saved state kept elsewhere (a cluster keeps it in NATS), then
/// applies every event stored after it. A state that cannot be read means a
/// longer scan. Blocking.
pub fn load_from(
    saved: Option<Vec<u8>>,
    store: &dyn Store,
    config: EngineConfig,
) -> anyhow::Result<Loaded> {
    let saved = saved.and_then(|bytes| match Engine::load_state(&bytes, config) {
        Ok(engine) => Some(engine),
        Err(reason) => {
            tracing::warn!(%reason, "ignoring an unreadable engine state; reading the store");
            None
        }
    });
    catch_up(saved, store, config)
}

/// The saved engine (or a new one) with every event stored after it applied.
fn catch_up(
    saved: Option<Engine>,
    store: &dyn Store,
    config: EngineConfig,
) -> anyhow::Result<Loaded> {
    let from_saved_state = saved.is_some();
    let mut engine = saved.unwrap_or_else(|| Engine::new(config));
    let now = Timestamp::now();
    let replayed = store.scan(engine.last_seq(), &mut |first, events| {
        engine.apply_committed(first, events, now)
    })?;
    Ok(Loaded {
        engine,
        from_saved_state,
        replayed,
    })
}

fn decode(bytes: &[u8], mark: StoreMark, config: EngineConfig) -> Option<Engine> {
    let (header, body) = bytes.split_at_checked(8)?;
    let deleted = u64::from_le_bytes(header.try_into().ok()?);
    if deleted != mark.deleted {
        tracing::info!("the saved engine state predates a deletion; rebuilding from the store");
        return None;
    }
    match Engine::load_state(body, config) {
        Ok(engine) if engine.last_seq() <= mark.max_seq => Some(engine),
        Ok(_) => {
            tracing::warn!(
                "the saved engine state is ahead of the store; rebuilding from the store"
            );
            None
        }
        Err(reason) => {
            tracing::warn!(%reason, "ignoring an unreadable engine state; rebuilding from the store");
            None
        }
    }
}

/// Writes the state atomically: a crash leaves the old file or the new one.
pub fn save(dir: &Path, engine_bytes: &[u8], mark: StoreMark) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&mark.deleted.to_le_bytes())?;
        file.write_all(engine_bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
    std::fs::File::open(dir)?.sync_all()
}
