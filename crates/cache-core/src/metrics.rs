//! Per-key-name cache metrics, registered in a registry the caller owns (one
//! per process), never in a global one, so tests and co-hosted services do
//! not collide.

use std::sync::{Arc, Mutex, Weak};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::{breaker::Breaker, keys::KeyName};

fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// `huddle_cache_breaker_state`, read from the breaker and the clock at
/// scrape time: set on transitions only, it never showed half-open (that
/// step is taken inside a call) and an idle process kept showing open long
/// after its cooldown.
#[derive(Clone)]
struct BreakerGauge {
    gauge: IntGauge,
    breaker: Arc<Mutex<Weak<Breaker>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A `Weak` cannot be left half-written by a panic.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Collector for BreakerGauge {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let breaker = lock(&self.breaker).upgrade();
        let state = breaker.map_or(0, |b| b.state().as_gauge());
        self.gauge.set(state);
        self.gauge.collect()
    }
}

#[derive(Clone)]
pub struct CacheMetrics {
    /// `result` = hit | miss | not_found_hit | coalesced | lease_wait_hit
    pub(crate) lookups: IntCounterVec,
    pub(crate) loads: IntCounterVec,
    pub(crate) load_errors: IntCounterVec,
    pub(crate) redis_errors: IntCounterVec,
    pub(crate) invalidations: IntCounterVec,
    pub(crate) redis_seconds: HistogramVec,
    pub(crate) load_seconds: HistogramVec,
    pub(crate) lease_waits: IntCounterVec,
    pub(crate) fills_rejected: IntCounterVec,
    breaker_state: BreakerGauge,
    pub(crate) breaker_rejections: IntCounter,
    outbox_pending: IntGaugeVec,
    outbox_applied: IntCounterVec,
}

impl CacheMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            registered(registry, HistogramVec::new(opts, &["key"])?)
        };
        let fast = vec![
            0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        ];
        let slow = vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let (breaker_state, breaker_rejections, outbox_pending) = Self::register_gauges(registry)?;
        let metrics = Self {
            lookups: counter(
                "huddle_cache_lookups_total",
                "Cache lookups by key name and result (hit, miss, not_found_hit, coalesced)",
                &["key", "result"],
            )?,
            loads: counter(
                "huddle_cache_loads_total",
                "Loader runs (database reads) after a miss",
                &["key"],
            )?,
            load_errors: counter(
                "huddle_cache_load_errors_total",
                "Loader runs that failed",
                &["key"],
            )?,
            redis_errors: counter(
                "huddle_cache_redis_errors_total",
                "Redis calls that failed or timed out (the request went on without the cache)",
                &["key"],
            )?,
            invalidations: counter(
                "huddle_cache_invalidations_total",
                "Keys deleted by invalidations, by key name (`tagged` for keys found through a tag)",
                &["key"],
            )?,
            redis_seconds: histogram(
                "huddle_cache_redis_seconds",
                "Latency of cache reads from Redis",
                fast,
            )?,
            load_seconds: histogram(
                "huddle_cache_load_seconds",
                "Latency of loaders after a miss",
                slow,
            )?,
            lease_waits: counter(
                "huddle_cache_lease_waits_total",
                "Misses that found another process filling the key and waited for it",
                &["key"],
            )?,
            fills_rejected: counter(
                "huddle_cache_fills_rejected_total",
                "Fills dropped because the key was invalidated while loading (stale sets prevented)",
                &["key"],
            )?,
            breaker_state,
            breaker_rejections,
            outbox_pending,
            outbox_applied: counter(
                "huddle_cache_invalidations_applied_total",
                "Outbox entries applied to Redis",
                &["service"],
            )?,
        };
        // The failure counters exist from the start, at 0, per key name: an
        // alert's `rate()` then sees the first failures, and a rule on them
        // names a series a scrape of any process shows.
        for name in KeyName::ALL {
            for counter in [
                &metrics.load_errors,
                &metrics.redis_errors,
                &metrics.fills_rejected,
                &metrics.lease_waits,
            ] {
                counter.with_label_values(&[name.as_str()]);
            }
        }
        Ok(metrics)
    }

    fn register_gauges(
        registry: &Registry,
    ) -> prometheus::Result<(BreakerGauge, IntCounter, IntGaugeVec)> {
        Ok((
            registered(
                registry,
                BreakerGauge {
                    gauge: IntGauge::new(
                        "huddle_cache_breaker_state",
                        "Redis circuit breaker: 0 closed, 1 open, 2 half-open (cooldown over: \
                         the next call probes)",
                    )?,
                    breaker: Arc::default(),
                },
            )?,
            registered(
                registry,
                IntCounter::new(
                    "huddle_cache_breaker_rejections_total",
                    "Redis calls skipped because the circuit breaker was open",
                )?,
            )?,
            registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "huddle_cache_invalidations_pending",
                        "Committed writes whose invalidation has not reached Redis yet (outbox rows)",
                    ),
                    &["service"],
                )?,
            )?,
        ))
    }

    /// The breaker the state gauge shows (the last cache built on these
    /// metrics: one per process).
    pub(crate) fn show_breaker(&self, breaker: &Arc<Breaker>) {
        *lock(&self.breaker_state.breaker) = Arc::downgrade(breaker);
    }

    pub(crate) fn lookup(&self, key: KeyName, result: &str) {
        self.lookups
            .with_label_values(&[key.as_str(), result])
            .inc();
    }

    /// Current count of one lookup result for one key name (for tests and
    /// `huddle cache stats` in-process).
    pub fn lookups(&self, key: KeyName, result: &str) -> u64 {
        self.lookups
            .with_label_values(&[key.as_str(), result])
            .get()
    }

    pub fn loads(&self, key: KeyName) -> u64 {
        self.loads.with_label_values(&[key.as_str()]).get()
    }

    pub fn set_invalidations_pending(&self, service: &str, pending: i64) {
        self.outbox_pending
            .with_label_values(&[service])
            .set(pending);
    }

    pub fn invalidations_pending(&self, service: &str) -> i64 {
        self.outbox_pending.with_label_values(&[service]).get()
    }

    pub fn invalidation_applied(&self, service: &str) {
        self.outbox_applied.with_label_values(&[service]).inc();
    }

    pub fn invalidations_applied(&self, service: &str) -> u64 {
        self.outbox_applied.with_label_values(&[service]).get()
    }

    pub fn fills_rejected(&self, key: KeyName) -> u64 {
        self.fills_rejected.with_label_values(&[key.as_str()]).get()
    }

    pub fn lease_waits(&self, key: KeyName) -> u64 {
        self.lease_waits.with_label_values(&[key.as_str()]).get()
    }

    pub fn breaker_rejections(&self) -> u64 {
        self.breaker_rejections.get()
    }

    pub fn redis_errors(&self, key: &str) -> u64 {
        self.redis_errors.with_label_values(&[key]).get()
    }
}
