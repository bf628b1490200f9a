//! Retention in ClickHouse: whole days go by partition, the day the
//! cutoff falls in by a DELETE mutation.

use super::http::{Http, quote};
use crate::store::StoreError;

pub async fn delete_before(
    http: &Http,
    cutoff_ms: i64,
    cut_inside: bool,
) -> Result<u64, StoreError> {
    let table = http.table("events");
    let old = http
        .number(&format!(
            "SELECT count() FROM {table} WHERE time_ms < {cutoff_ms}"
        ))
        .await?;
    if old == 0 {
        return Ok(0);
    }
    // Partitions are named by their UTC day ('2023-04-01'); those before
    // the cutoff's day hold only older events. (system.parts' max_date
    // is not kept for a custom partition key in ClickHouse 18.16.)
    let Some(day) = chrono::DateTime::from_timestamp_millis(cutoff_ms)
        .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
    else {
        return Ok(0);
    };
    let parts = http
        .execute(&format!(
            "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = 'events' \
             AND active AND partition < {} FORMAT TabSeparated",
            quote(&http.url.database),
            quote(&day)
        ))
        .await?;
    for partition in parts.lines().map(str::trim).filter(|p| !p.is_empty()) {
        // Another node may have dropped it a moment ago: that is fine.
        if let Err(e) = http
            .execute(&format!(
                "ALTER TABLE {table} DROP PARTITION {}",
                quote(partition)
            ))
            .await
        {
            tracing::debug!("dropping partition {partition}: {e}");
        }
    }
    let left = http
        .number(&format!(
            "SELECT count() FROM {table} WHERE time_ms < {cutoff_ms}"
        ))
        .await?;
    if left > 0 && cut_inside {
        http.execute(&format!(
            "ALTER TABLE {table} DELETE WHERE time_ms < {cutoff_ms}"
        ))
        .await?;
        // Summaries of hours before the cutoff are never taken (queries
        // begin at it); they go too.
        let floor = crate::query::rollup::hour_of(cutoff_ms);
        http.execute(&format!(
            "ALTER TABLE {} DELETE WHERE hour < {floor}",
            http.table(super::rollup::TABLE)
        ))
        .await?;
    }
    Ok(old)
}
