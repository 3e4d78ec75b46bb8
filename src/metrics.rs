//! Prometheus metrics: requests by route and status, bytes served, cache
//! hits and misses, builds by result with durations; store size and blob
//! count are measured when scraped (cached for a few seconds).

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use prometheus::{
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_with_registry, Encoder, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, Registry, TextEncoder,
};

use crate::components::Components;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub bytes_served: IntCounter,
    /// Derived blobs made (gzip conversions actually run).
    pub derivations: IntCounter,
    pub cache: IntCounterVec,
    pub builds: IntCounterVec,
    pub build_seconds: HistogramVec,
    store_bytes: IntGauge,
    blobs: IntGauge,
    components: IntGauge,
    measured: Mutex<Option<Instant>>,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let r = Registry::new_custom(Some("artifact_store".into()), None)?;
    Ok(Metrics {
        requests: register_int_counter_vec_with_registry!(
            "http_requests_total",
            "HTTP requests by route, method and status",
            &["route", "method", "status"],
            r
        )?,
        request_seconds: register_histogram_vec_with_registry!(
            "http_request_duration_seconds",
            "Time to the response head, by route",
            &["route"],
            vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
            r
        )?,
        bytes_served: register_int_counter_with_registry!(
            "bytes_served_total",
            "Body bytes of successful downloads",
            r
        )?,
        derivations: register_int_counter_with_registry!(
            "derived_blobs_made_total",
            "Derived blobs (tar.gz forms) actually made",
            r
        )?,
        cache: register_int_counter_vec_with_registry!(
            "cache_requests_total",
            "Lookups of stored components and images: hit or miss",
            &["kind", "result"],
            r
        )?,
        builds: register_int_counter_vec_with_registry!(
            "jobs_total",
            "Finished jobs by kind and result",
            &["kind", "result"],
            r
        )?,
        build_seconds: register_histogram_vec_with_registry!(
            "job_duration_seconds",
            "Job durations by kind and result",
            &["kind", "result"],
            vec![1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0],
            r
        )?,
        store_bytes: register_int_gauge_with_registry!(
            "store_bytes",
            "Bytes in the blob store",
            r
        )?,
        blobs: register_int_gauge_with_registry!("blobs", "Blobs in the blob store", r)?,
        components: register_int_gauge_with_registry!(
            "components",
            "Indexed (component, tag, arch) entries",
            r
        )?,
        measured: Mutex::new(None),
        registry: r,
    })
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().expect("metric definitions are valid"));

pub fn cache(kind: &str, hit: bool) {
    METRICS
        .cache
        .with_label_values(&[kind, if hit { "hit" } else { "miss" }])
        .inc();
}

pub fn job_finished(kind: &str, result: &str, seconds: f64) {
    METRICS.builds.with_label_values(&[kind, result]).inc();
    METRICS
        .build_seconds
        .with_label_values(&[kind, result])
        .observe(seconds);
}

impl Metrics {
    /// The text exposition, refreshing the store gauges now and then
    /// ([`Components::stats_refresh`]).
    pub fn render(&self, c: &Components) -> String {
        let stale = {
            let mut m = self.measured.lock().unwrap_or_else(|e| e.into_inner());
            let stale = m.is_none_or(|t| t.elapsed() > c.stats_refresh());
            if stale {
                *m = Some(Instant::now());
            }
            stale
        };
        if stale {
            let st = c.stats();
            self.blobs.set(st.blobs as i64);
            self.store_bytes.set(st.bytes as i64);
            self.components.set(st.components as i64);
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
