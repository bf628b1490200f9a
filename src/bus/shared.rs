//! What the nodes share through the bus besides the stream: the loader's
//! lease, progress marks (compare-and-set) and large values (the engine's
//! saved state).

use async_nats::jetstream::{kv, object_store};

use super::{Bus, BusError, js_err};

impl Bus {
    /// Tries to take (or keep) the lease named `name` for this node. Returns
    /// the revision to renew it with, or `None` while another node holds it.
    pub async fn take_lease(&self, name: &str, held: Option<u64>) -> Result<Option<u64>, BusError> {
        let value: bytes::Bytes = self.instance.as_bytes().to_vec().into();
        match held {
            Some(revision) => match self.lease.update(name, value, revision).await {
                Ok(revision) => Ok(Some(revision)),
                // Expired and taken by another node meanwhile.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(BusError::JetStream(format!(
                    "renewing the lease {name}: {e}"
                ))),
            },
            None => match self.lease.create(name, value).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(BusError::JetStream(format!("taking the lease {name}: {e}"))),
            },
        }
    }

    /// Gives the lease up at once (at shutdown), so another node takes over
    /// without waiting for it to expire.
    pub async fn release_lease(&self, name: &str, revision: u64) {
        let _ = self
            .lease
            .delete_expect_revision(name, Some(revision))
            .await;
    }

    /// A shared counter or mark, with the revision to update it with.
    pub async fn progress(&self, name: &str) -> Result<(u64, Option<u64>), BusError> {
        if !self.is_connected() {
            return Err(BusError::Unreachable(self.url.redacted()));
        }
        let entry = self
            .progress
            .entry(name)
            .await
            .map_err(js_err("reading progress"))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let value = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                (value, Some(entry.revision))
            }
            _ => (0, None),
        })
    }

    /// Sets `name` to `value` if it is still at `revision` (`None`: never
    /// set); returns the new revision, or `None` when another node moved it.
    pub async fn set_progress(
        &self,
        name: &str,
        value: u64,
        revision: Option<u64>,
    ) -> Result<Option<u64>, BusError> {
        let bytes: bytes::Bytes = value.to_string().into_bytes().into();
        match revision {
            Some(revision) => match self.progress.update(name, bytes, revision).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(BusError::JetStream(format!("storing progress: {e}"))),
            },
            None => match self.progress.create(name, bytes).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(BusError::JetStream(format!("storing progress: {e}"))),
            },
        }
    }

    /// The shared value `name` (`None` when never saved).
    pub async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, BusError> {
        let mut object = match self.state.get(name).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BusError::JetStream(format!("reading {name}: {e}"))),
        };
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
            .await
            .map_err(|e| BusError::JetStream(format!("reading {name}: {e}")))?;
        Ok(Some(bytes))
    }

    /// Replaces the shared value `name`.
    pub async fn save(&self, name: &str, bytes: &[u8]) -> Result<(), BusError> {
        let mut reader = bytes;
        self.state
            .put(name, &mut reader)
            .await
            .map_err(|e| BusError::JetStream(format!("saving {name}: {e}")))?;
        Ok(())
    }

    /// Drops the stream's messages before `seq` (they are in ClickHouse).
    pub async fn purge_before(&self, seq: u64) -> Result<u64, BusError> {
        let purged = self
            .stream
            .purge()
            .sequence(seq)
            .await
            .map_err(js_err("trimming the stream"))?;
        Ok(purged.purged)
    }
}
