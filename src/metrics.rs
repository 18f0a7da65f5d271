//! Every metric the proxy exports, in one place, rendered in the Prometheus text format.
//!
//! Counters live here as atomics; gauges that mirror other components' state
//! (config generation, ready connectors, token cache counters) are read from those
//! components when `/metrics` is scraped, see [`Sources`].
//!
//! Labels are bounded: a connector id (bounded by the configuration), the HTTP
//! method (a fixed set, everything else is `other`), the endpoint kind
//! ([`crate::routing::Endpoint::kind`] plus `base`/`config`/`none`) and the status
//! class. Never a digest, tag or repository name, which are unbounded.

// foldhash: read on every request; the keys are ours (connector ids, label sets, addresses), not chosen by clients.
use foldhash::HashMap;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::AuthStats;
use crate::registry::Registry;
use crate::shard::Sharded;
use crate::status::StatusBoard;

/// Upper bounds (seconds) of the duration histograms' buckets. Registry traffic
/// spans cached manifest HEADs (milliseconds) to multi-GiB blobs (minutes).
pub const DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Prefix of every metric name.
const NS: &str = "oci_connector";

/// The label value used when a request never reached a connector.
pub const NO_CONNECTOR: &str = "none";

/// One finished proxied request, as the access log sees it.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    /// Connector id (`ns/name`), or [`NO_CONNECTOR`]. Borrowed: recording a
    /// request allocates nothing and touches no shared count once its series
    /// exists.
    pub connector: &'a str,
    /// HTTP method.
    pub method: &'a http::Method,
    /// Endpoint kind: `manifest`, `blob`, `upload`, `tags`, `referrers`, `base`, `config`, `none`.
    pub endpoint: &'static str,
    /// Status sent to the client; 0 when no response was written.
    pub status: u16,
    /// Whole request duration.
    pub duration: Duration,
    /// Time from the first upstream attempt to the final upstream response header, if any.
    pub upstream_duration: Option<Duration>,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
}

/// Outcome of a configuration reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot was swapped in.
    Success,
    /// The files were invalid; the last good snapshot keeps serving.
    Error,
}

/// The proxy's own counters and histograms.
///
/// Request series and the in-flight gauge are kept per thread ([`Sharded`]):
/// a request writes only its own thread's shard (an uncontended lock on a
/// line that stays in its core's cache), and `/metrics` sums the shards.
#[derive(Debug, Default)]
pub struct Metrics {
    shards: Sharded<Mutex<Shard>>,
    in_flight: Sharded<AtomicI64>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_reload_ok_unix: AtomicU64,
}

/// One thread's request series, by connector.
#[derive(Debug, Default)]
struct Shard {
    connectors: HashMap<Arc<str>, ConnectorSeries>,
}

/// One connector's series in one shard. A connector sees a handful of
/// (method, endpoint) pairs, so a list beats a map.
#[derive(Debug, Default)]
struct ConnectorSeries {
    /// By (method, endpoint).
    requests: Vec<((&'static str, &'static str), RequestSeries)>,
    /// By endpoint.
    timings: Vec<(&'static str, TimingSeries)>,
}

/// The value for `key` in a short association list, added empty if missing.
fn entry<K: PartialEq, V: Default>(list: &mut Vec<(K, V)>, key: K) -> &mut V {
    let i = match list.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            list.push((key, V::default()));
            list.len() - 1
        }
    };
    &mut list[i].1
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RequestKey {
    connector: Arc<str>,
    method: &'static str,
    endpoint: &'static str,
}

/// Per (connector, method, endpoint): counts by status class and byte totals.
#[derive(Debug, Default, Clone)]
struct RequestSeries {
    /// Index 0 = no response, 1..=5 = 1xx..5xx.
    by_class: [u64; 6],
    bytes_in: u64,
    bytes_out: u64,
}

impl RequestSeries {
    fn add(&mut self, other: &RequestSeries) {
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TimingKey {
    connector: Arc<str>,
    endpoint: &'static str,
}

/// Per (connector, endpoint): request and upstream duration histograms.
#[derive(Debug, Default, Clone)]
struct TimingSeries {
    request: Histogram,
    upstream: Histogram,
}

/// A fixed-bucket histogram.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Non-cumulative counts; the last slot is `+Inf`.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    sum_micros: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum_micros = self.sum_micros.saturating_add(d.as_micros().min(u64::MAX as u128) as u64);
        self.count += 1;
    }

    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.count += other.count;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, le) in DURATION_BUCKETS.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).enumerate()
        {
            cumulative += self.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Keeps one request counted in `requests_in_flight` while alive.
#[derive(Debug)]
pub struct InFlight(&'static Metrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        // Possibly another thread's shard than the increment's (a work-stealing
        // runtime moves tasks); only the sum is read.
        self.0.in_flight.local().fetch_sub(1, Ordering::Relaxed);
    }
}

/// Components whose state is exported as gauges at scrape time.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// The live snapshot (generation, connector count).
    pub registry: &'a Registry,
    /// The token machinery's counters.
    pub auth: &'a AuthStats,
    /// Connector conditions (ready count).
    pub status: &'a StatusBoard,
}

impl Metrics {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty counters that live as long as the process: the proxy's request
    /// contexts hold a plain reference (no shared reference count to bump).
    pub fn leaked() -> &'static Metrics {
        Box::leak(Box::new(Metrics::new()))
    }

    /// Counts a request as in flight until the returned guard is dropped (with
    /// the request's context, however the request ends).
    pub fn in_flight_guard(&'static self) -> InFlight {
        self.in_flight.local().fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Requests currently being served.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.all().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Records a finished request.
    pub fn record_request(&self, r: &RequestRecord<'_>) {
        let method = method_label(r.method);
        let mut shard = self.shards.local().lock().unwrap_or_else(|p| p.into_inner());
        let series = match shard.connectors.get_mut(r.connector) {
            Some(s) => s,
            None => shard.connectors.entry(Arc::from(r.connector)).or_default(),
        };
        let counts = entry(&mut series.requests, (method, r.endpoint));
        counts.by_class[usize::from(r.status / 100).min(5)] += 1;
        counts.bytes_in += r.bytes_in;
        counts.bytes_out += r.bytes_out;
        let timing = entry(&mut series.timings, r.endpoint);
        timing.request.observe(r.duration);
        if let Some(u) = r.upstream_duration {
            timing.upstream.observe(u);
        }
    }

    /// Drops the request and timing series of connectors not in `live` (after
    /// a reload removed them), so `/metrics` does not grow with connector churn.
    /// Series without a connector stay.
    pub fn retain_connectors(&self, live: &std::collections::HashSet<&str>) {
        for shard in self.shards.all() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.connectors.retain(|c, _| &**c == NO_CONNECTOR || live.contains(&**c));
        }
    }

    /// Records a reload attempt.
    pub fn record_reload(&self, outcome: ReloadOutcome) {
        match outcome {
            ReloadOutcome::Success => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                self.last_reload_ok_unix.store(now, Ordering::Relaxed);
            }
            ReloadOutcome::Error => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self, src: Sources<'_>) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let (requests, timings) = self.merged();
        self.render_requests(&mut out, &requests);
        self.render_timings(&mut out, &timings);

        let a = src.auth;
        header(
            &mut out,
            "token_cache_hits_total",
            "counter",
            "Upstream requests served with a cached registry token.",
        );
        sample(&mut out, "token_cache_hits_total", "", a.cache_hit_count());
        header(
            &mut out,
            "token_cache_misses_total",
            "counter",
            "Upstream requests that had to wait for a token request.",
        );
        sample(&mut out, "token_cache_misses_total", "", a.cache_misses.load(Ordering::Relaxed));
        header(
            &mut out,
            "token_fetches_total",
            "counter",
            "Token requests to registry token endpoints, by outcome.",
        );
        sample(&mut out, "token_fetches_total", "outcome=\"success\"", a.fetch_ok.load(Ordering::Relaxed));
        sample(&mut out, "token_fetches_total", "outcome=\"error\"", a.fetch_failed.load(Ordering::Relaxed));

        header(&mut out, "reloads_total", "counter", "Connector configuration reloads, by outcome.");
        sample(&mut out, "reloads_total", "outcome=\"success\"", self.reloads_ok.load(Ordering::Relaxed));
        sample(&mut out, "reloads_total", "outcome=\"error\"", self.reloads_failed.load(Ordering::Relaxed));
        header(
            &mut out,
            "last_reload_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful reload (0: none since start).",
        );
        sample(
            &mut out,
            "last_reload_success_timestamp_seconds",
            "",
            self.last_reload_ok_unix.load(Ordering::Relaxed),
        );

        let snapshot = src.registry.load();
        header(&mut out, "config_generation", "gauge", "Generation of the connector snapshot being served.");
        sample(&mut out, "config_generation", "", snapshot.generation);
        header(&mut out, "connectors", "gauge", "Connectors in the live configuration.");
        sample(&mut out, "connectors", "", snapshot.connectors().len() as u64);
        header(&mut out, "connectors_ready", "gauge", "Connectors whose Ready condition is True.");
        sample(&mut out, "connectors_ready", "", src.status.ready_count() as u64);
        header(&mut out, "requests_in_flight", "gauge", "Requests being served now.");
        let _ = writeln!(out, "{NS}_requests_in_flight {}", self.in_flight().max(0));
        out
    }

    /// Every shard's series summed, in label order.
    fn merged(&self) -> (BTreeMap<RequestKey, RequestSeries>, BTreeMap<TimingKey, TimingSeries>) {
        let mut requests = BTreeMap::<RequestKey, RequestSeries>::new();
        let mut timings = BTreeMap::<TimingKey, TimingSeries>::new();
        for shard in self.shards.all() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (connector, series) in &shard.connectors {
                for ((method, endpoint), counts) in &series.requests {
                    let key = RequestKey { connector: connector.clone(), method, endpoint };
                    requests.entry(key).or_default().add(counts);
                }
                for (endpoint, t) in &series.timings {
                    let sum =
                        timings.entry(TimingKey { connector: connector.clone(), endpoint }).or_default();
                    sum.request.add(&t.request);
                    sum.upstream.add(&t.upstream);
                }
            }
        }
        (requests, timings)
    }

    fn render_requests(&self, out: &mut String, map: &BTreeMap<RequestKey, RequestSeries>) {
        header(
            out,
            "requests_total",
            "counter",
            "Requests by connector, method, endpoint kind and status class.",
        );
        for (k, s) in map {
            for (class, &n) in s.by_class.iter().enumerate() {
                if n > 0 {
                    let labels = format!("{},status_class=\"{}\"", request_labels(k), class_label(class));
                    sample(out, "requests_total", &labels, n);
                }
            }
        }
        header(out, "request_bytes_total", "counter", "Request body bytes received from clients.");
        for (k, s) in map {
            sample(out, "request_bytes_total", &request_labels(k), s.bytes_in);
        }
        header(out, "response_bytes_total", "counter", "Response body bytes sent to clients.");
        for (k, s) in map {
            sample(out, "response_bytes_total", &request_labels(k), s.bytes_out);
        }
    }

    fn render_timings(&self, out: &mut String, map: &BTreeMap<TimingKey, TimingSeries>) {
        let labels =
            |k: &TimingKey| format!("connector=\"{}\",endpoint=\"{}\"", escape(&k.connector), k.endpoint);
        header(
            out,
            "request_duration_seconds",
            "histogram",
            "Time from request start to the end of the response.",
        );
        for (k, t) in map {
            t.request.write(out, &format!("{NS}_request_duration_seconds"), &labels(k));
        }
        header(
            out,
            "upstream_duration_seconds",
            "histogram",
            "Time from the first upstream attempt to the final upstream response header (includes token retries and followed redirects).",
        );
        for (k, t) in map {
            if t.upstream.count > 0 {
                t.upstream.write(out, &format!("{NS}_upstream_duration_seconds"), &labels(k));
            }
        }
    }
}

fn request_labels(k: &RequestKey) -> String {
    format!("connector=\"{}\",method=\"{}\",endpoint=\"{}\"", escape(&k.connector), k.method, k.endpoint)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {NS}_{name} {help}");
    let _ = writeln!(out, "# TYPE {NS}_{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{NS}_{name} {value}");
    } else {
        let _ = writeln!(out, "{NS}_{name}{{{labels}}} {value}");
    }
}

/// The method as a bounded label value.
fn method_label(m: &http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn class_label(class: usize) -> &'static str {
    ["none", "1xx", "2xx", "3xx", "4xx", "5xx"].get(class).copied().unwrap_or("none")
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request and timing series as `/metrics` renders them.
    fn rendered_series(m: &Metrics) -> String {
        let (requests, timings) = m.merged();
        let mut out = String::new();
        m.render_requests(&mut out, &requests);
        m.render_timings(&mut out, &timings);
        out
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(1000));
        let mut out = String::new();
        h.write(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"300\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 1000.033\n"), "{out}");
    }

    #[test]
    fn labels_are_bounded_and_escaped() {
        assert_eq!(method_label(&http::Method::from_bytes(b"PROPFIND").unwrap_or_default()), "other");
        assert_eq!(class_label(0), "none");
        assert_eq!(class_label(4), "4xx");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn requests_are_counted_by_class_with_bytes() {
        let m = Metrics::leaked();
        for status in [200, 200, 404, 0] {
            let _guard = m.in_flight_guard();
            assert_eq!(m.in_flight(), 1);
            m.record_request(&RequestRecord {
                connector: "ns/a",
                method: &http::Method::GET,
                endpoint: "blob",
                status,
                duration: Duration::from_millis(10),
                upstream_duration: (status != 0).then_some(Duration::from_millis(5)),
                bytes_in: 1,
                bytes_out: 100,
            });
        }
        let out = rendered_series(m);
        let l = "connector=\"ns/a\",method=\"GET\",endpoint=\"blob\"";
        assert!(
            out.contains(&format!("oci_connector_requests_total{{{l},status_class=\"2xx\"}} 2\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("oci_connector_requests_total{{{l},status_class=\"4xx\"}} 1\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("oci_connector_requests_total{{{l},status_class=\"none\"}} 1\n")),
            "{out}"
        );
        assert!(out.contains(&format!("oci_connector_response_bytes_total{{{l}}} 400\n")), "{out}");
        assert!(out.contains(&format!("oci_connector_request_bytes_total{{{l}}} 4\n")), "{out}");
        assert!(out.contains(
            "oci_connector_upstream_duration_seconds_count{connector=\"ns/a\",endpoint=\"blob\"} 3\n"
        ));
        assert_eq!(m.in_flight(), 0);
    }

    #[test]
    fn series_of_removed_connectors_are_dropped() {
        let m = Metrics::new();
        for connector in ["ns/kept", "ns/gone", NO_CONNECTOR] {
            m.record_request(&RequestRecord {
                connector,
                method: &http::Method::GET,
                endpoint: "manifest",
                status: 200,
                duration: Duration::from_millis(1),
                upstream_duration: None,
                bytes_in: 0,
                bytes_out: 1,
            });
        }
        m.retain_connectors(&["ns/kept"].into_iter().collect());
        let out = rendered_series(&m);
        assert!(out.contains("connector=\"ns/kept\""), "{out}");
        assert!(out.contains(&format!("connector=\"{NO_CONNECTOR}\"")), "{out}");
        assert!(!out.contains("ns/gone"), "{out}");
    }

    #[test]
    fn shards_of_all_threads_are_summed() {
        let m = Metrics::leaked();
        let record = |status| RequestRecord {
            connector: "ns/a",
            method: &http::Method::HEAD,
            endpoint: "manifest",
            status,
            duration: Duration::from_millis(2),
            upstream_duration: Some(Duration::from_millis(1)),
            bytes_in: 0,
            bytes_out: 10,
        };
        let guard = m.in_flight_guard();
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    let _inner = m.in_flight_guard();
                    for _ in 0..100 {
                        m.record_request(&record(200));
                    }
                    m.record_request(&record(503));
                });
            }
        });
        assert_eq!(m.in_flight(), 1);
        drop(guard);
        assert_eq!(m.in_flight(), 0);
        let out = rendered_series(m);
        let l = "connector=\"ns/a\",method=\"HEAD\",endpoint=\"manifest\"";
        assert!(
            out.contains(&format!("oci_connector_requests_total{{{l},status_class=\"2xx\"}} 300\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("oci_connector_requests_total{{{l},status_class=\"5xx\"}} 3\n")),
            "{out}"
        );
        assert!(out.contains(&format!("oci_connector_response_bytes_total{{{l}}} 3030\n")), "{out}");
        assert!(out.contains(
            "oci_connector_request_duration_seconds_count{connector=\"ns/a\",endpoint=\"manifest\"} 303\n"
        ));
        assert_eq!(
            out.matches("oci_connector_response_bytes_total{").count(),
            1,
            "one series, not one per shard"
        );
    }
}
