//! Answering a [`Query`] from what a store holds: whole hours from their
//! summaries where the query can take them ([`crate::query::rollup`]),
//! every other event read in place, in parallel parts, merged. The answer
//! is the one a scan of every event would give.

use super::{Part, Store, StoreError};
use crate::query::Query;
use crate::query::exec::{Answer, ExecError, Executor};
use crate::query::rollup::{BlockView, Covered};

/// An answer, and what it took.
#[derive(Debug)]
pub struct Answered {
    pub answer: Answer,
    /// Hours of one type taken from their summaries.
    pub summary_hours: u64,
    /// Stored events read one at a time.
    pub events_read: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The query cannot be answered (too many groups...).
    #[error(transparent)]
    Query(#[from] ExecError),
}

/// Answers `query` with `threads` threads reading events. Blocking.
pub fn answer(store: &dyn Store, query: &Query, threads: u64) -> Result<Answered, AnswerError> {
    let types = query.types();
    let names = query.names_read();
    let mut summed = Executor::new(query);
    let take_blocks = summed.may_take_blocks();
    let mut covered = Covered::default();
    if take_blocks {
        covered = store.rollups(query.range, types.as_deref(), &mut |hour, kind, bytes, parts| {
        let taken = BlockView::decode(bytes).and_then(|block| {
            if !summed.can_take(&block) {
                return Ok(false);
            }
            let mut needed = Vec::new();
            for name in summed.parts_needed(&block) {
                let bytes = parts(&name).ok_or_else(|| format!("its part {name} is missing"))?;
                needed.push((name, bytes));
            }
            // Nothing is taken unless every part reads.
            summed.take_block(&block, hour, kind, &needed)?;
            Ok(true)
        });
        taken.unwrap_or_else(|reason| {
            tracing::warn!(hour, kind, %reason, "reading the events of an hour whose summary is unreadable");
            false
        })
    })?;
    }
    let scan = |of: u64, covered: &Covered| {
        Part::in_parallel(of, |part| {
            let (mut exec, mut read) = (Executor::new(query), 0u64);
            store
                .visit_range(
                    query.range,
                    types.as_deref(),
                    Some(&names),
                    part,
                    covered,
                    &mut |seq, event| {
                        read += 1;
                        exec.add_one(seq, event);
                    },
                )
                .map(|()| (exec, read))
        })
    };
    let mut parts = scan(threads, &covered)?;
    let mut summary_hours = covered.len() as u64;
    // Read again in one part, every event, when the parts may have kept
    // different fields (which ones depends on the order events came in).
    if summed.capped() || parts.iter().any(|(exec, _)| exec.capped()) {
        summed = Executor::new(query);
        summary_hours = 0;
        parts = scan(1, &Covered::default())?;
    }
    let mut exec = summed;
    let mut events_read = 0;
    for (part, read) in parts {
        exec.merge(part);
        events_read += read;
    }
    Ok(Answered {
        answer: exec.finish()?,
        summary_hours,
        events_read,
    })
}
