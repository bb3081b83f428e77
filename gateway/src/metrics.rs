//! `/metrics` in Prometheus' text format on every role: HTTP requests and their latency by
//! endpoint (one middleware), plus what each role adds ([`Metrics::with_source`]): books by
//! status, resyncs and gaps per book, messages applied, snapshot weight and 429/418 (DCN);
//! replicas by status and pod heartbeat ages (mgmt); local, remote and failover reads (restapi).
//!
//! Labels are bounded: unknown paths are counted as `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Requests of one path with one status.
#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Per bucket of [`BUCKETS`] (not cumulative here; rendered cumulatively).
    buckets: [u64; BUCKETS.len()],
}

/// Renders role-specific metrics (appended to the text).
pub type Source = Arc<dyn Fn(&mut String) + Send + Sync>;

/// A pod's metrics; clones share them.
#[derive(Clone)]
pub struct Metrics {
    role: &'static str,
    /// Paths that get their own label.
    known: Arc<Vec<&'static str>>,
    series: Arc<Mutex<BTreeMap<(&'static str, u16), Series>>>,
    sources: Vec<Source>,
}

impl Metrics {
    /// Metrics of a pod of `role` whose endpoints are `known`.
    pub fn new(role: &'static str, known: Vec<&'static str>) -> Self {
        Self {
            role,
            known: Arc::new(known),
            series: Arc::default(),
            sources: Vec::new(),
        }
    }

    /// Adds role-specific metrics.
    #[must_use]
    pub fn with_source(mut self, source: Source) -> Self {
        self.sources.push(source);
        self
    }

    fn record(&self, path: &str, status: StatusCode, seconds: f64) {
        let label = self
            .known
            .iter()
            .find(|known| **known == path)
            .copied()
            .unwrap_or("other");
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = series.entry((label, status.as_u16())).or_default();
        entry.count += 1;
        entry.sum_seconds += seconds;
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            entry.buckets[bucket] += 1;
        }
    }

    /// The text of `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let role = self.role;
        out.push_str(
            "# HELP ubdcc_http_requests_total HTTP requests answered, by path and status.\n",
        );
        out.push_str("# TYPE ubdcc_http_requests_total counter\n");
        let series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((path, status), s) in series.iter() {
            writeln!(out, "ubdcc_http_requests_total{{role=\"{role}\",path=\"{path}\",status=\"{status}\"}} {}", s.count).ok();
        }
        out.push_str("# HELP ubdcc_http_request_duration_seconds Time to answer, by path.\n");
        out.push_str("# TYPE ubdcc_http_request_duration_seconds histogram\n");
        let mut by_path: BTreeMap<&str, Series> = BTreeMap::new();
        for ((path, _), s) in series.iter() {
            let total = by_path.entry(path).or_default();
            total.count += s.count;
            total.sum_seconds += s.sum_seconds;
            for (sum, add) in total.buckets.iter_mut().zip(s.buckets) {
                *sum += add;
            }
        }
        drop(series);
        for (path, s) in &by_path {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(s.buckets) {
                cumulative += count;
                writeln!(out, "ubdcc_http_request_duration_seconds_bucket{{role=\"{role}\",path=\"{path}\",le=\"{bound}\"}} {cumulative}").ok();
            }
            writeln!(out, "ubdcc_http_request_duration_seconds_bucket{{role=\"{role}\",path=\"{path}\",le=\"+Inf\"}} {}", s.count).ok();
            writeln!(
                out,
                "ubdcc_http_request_duration_seconds_sum{{role=\"{role}\",path=\"{path}\"}} {}",
                s.sum_seconds
            )
            .ok();
            writeln!(
                out,
                "ubdcc_http_request_duration_seconds_count{{role=\"{role}\",path=\"{path}\"}} {}",
                s.count
            )
            .ok();
        }
        for source in &self.sources {
            source(&mut out);
        }
        out
    }
}

/// The middleware counting every request.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(&path, response.status(), started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Metrics>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

/// Adds `GET /metrics` to `router` and counts every request it answers.
pub fn instrument(router: axum::Router, metrics: Metrics) -> axum::Router {
    router
        .route(
            "/metrics",
            axum::routing::get(serve).with_state(metrics.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Writes one metric family: `# HELP`, `# TYPE`, then `samples` of `(labels, value)`.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}").ok();
    for (labels, value) in samples {
        if labels.is_empty() {
            writeln!(out, "{name} {value}").ok();
        } else {
            writeln!(out, "{name}{{{labels}}} {value}").ok();
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A monotonic counter shared between a role and its metrics source.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_render_as_counters_and_cumulative_histograms() {
        let metrics = Metrics::new("restapi", vec!["/get_asks"]);
        metrics.record("/get_asks", StatusCode::OK, 0.0002);
        metrics.record("/get_asks", StatusCode::OK, 0.002);
        metrics.record("/nope", StatusCode::NOT_FOUND, 0.00001);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"ubdcc_http_requests_total{role="restapi",path="/get_asks",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ubdcc_http_requests_total{role="restapi",path="other",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"ubdcc_http_request_duration_seconds_bucket{role="restapi",path="/get_asks",le="0.00025"} 1"#), "{text}");
        assert!(text.contains(r#"ubdcc_http_request_duration_seconds_bucket{role="restapi",path="/get_asks",le="+Inf"} 2"#), "{text}");
        assert_eq!(escape("a\"b\\c"), r#"a\"b\\c"#);
    }
}
