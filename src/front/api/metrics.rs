//! `GET /metrics`: the Prometheus metrics of this daemon (`crate::metrics`).
//!
//! Counters and histograms are kept as the daemon works. The volume's figures
//! come from the tally `cloudraid status` makes (a scan of the index and one
//! probe per backend); a scrape makes it again only when the last one is older
//! than `TALLY_EVERY`, so scraping often costs no more than scraping every 30 s.
//! What is cheap to read (circuit states, cache, pending uploads, free disk) is
//! read at every scrape.

use super::{authorize, Api, ApiResult, Shared};
use crate::format::TokenRole;
use crate::front::status::StatusReport;
use crate::metrics::{ratio, unix_now, BackendLabel, METRICS, TALLY_EVERY};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// The last tally and when it was made.
pub type Tally = tokio::sync::Mutex<Option<(Instant, StatusReport)>>;

pub async fn metrics(State(api): Shared, headers: HeaderMap) -> ApiResult<Response> {
    if !api.section.metrics_public {
        authorize(&api, &headers, TokenRole::Read).await?;
    }
    refresh(&api).await?;
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        METRICS.encode(),
    )
        .into_response())
}

/// Sets the volume's gauges: the tally when it is stale, the cheap figures always.
async fn refresh(api: &Api) -> ApiResult<()> {
    let mut tally = api.tally.lock().await;
    let stale = tally
        .as_ref()
        .is_none_or(|(at, _)| at.elapsed() >= TALLY_EVERY);
    if stale {
        let s = super::status_report(api).await?;
        set_tally(&s);
        *tally = Some((Instant::now(), s));
    }
    let fs = &api.fs;
    let vol = fs.volume();
    for (slot, health) in vol.slots.iter().zip(&vol.health) {
        METRICS
            .backend_up
            .get_or_create(&BackendLabel {
                backend: slot.name.clone(),
            })
            .set(i64::from(!health.is_down()));
    }
    let cache = vol.cache.stats();
    METRICS.cache_bytes.set(cache.bytes as i64);
    METRICS.cache_capacity.set(cache.capacity as i64);
    let fs2 = fs.clone();
    let (files, bytes) = tokio::task::spawn_blocking(move || crate::fs::commit_all_stats(&fs2))
        .await
        .unwrap_or_default();
    let v = &METRICS.volume;
    v.pending_files.set(files as i64);
    v.pending_bytes.set(bytes as i64);
    if let Some(d) = fs.local_disk() {
        v.state_free.set(d.free_bytes as i64);
    }
    Ok(())
}

fn set_tally(s: &StatusReport) {
    let v = &METRICS.volume;
    v.files.set(s.files as i64);
    v.directories.set(s.directories as i64);
    v.chunks.set(s.chunks as i64);
    v.logical.set(s.logical_bytes as i64);
    v.unique.set(s.unique_bytes as i64);
    v.sealed.set(s.sealed_bytes as i64);
    v.stored.set(s.stored_bytes as i64);
    v.dedup_ratio.set(ratio(s.logical_bytes, s.unique_bytes));
    v.compression_ratio
        .set(ratio(s.unique_bytes, s.sealed_bytes));
    v.overhead_ratio
        .set(ratio(s.stored_bytes + s.inline_bytes, s.sealed_bytes));
    v.degraded.set(s.degraded_chunks as i64);
    v.metadata_pending.set(s.metadata_pending as i64);
    v.snapshots.set(s.snapshots as i64);
    v.writes_blocked.set(i64::from(s.writes.blocked));
    v.tally_time.set(unix_now() as i64);
    for b in &s.backends {
        let l = BackendLabel {
            backend: b.name.clone(),
        };
        METRICS
            .backend_shards
            .get_or_create(&l)
            .set(b.shards as i64);
        METRICS.backend_stored.get_or_create(&l).set(b.bytes as i64);
    }
}
