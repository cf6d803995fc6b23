//! Connection pools' state as Prometheus gauges, read at scrape time
//! (deadpool's `status()` is a few atomic loads), so nothing has to update
//! them on every checkout: Postgres (`huddle_db_pool_*{database}`) and
//! Redis (`huddle_redis_pool_*`).

use prometheus::{
    IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::Database;

/// A gauge and the field of the pool's status it shows.
type Field = (IntGaugeVec, fn(&deadpool::Status) -> usize);

/// `huddle_db_pool_{max_size,size,available,waiting}{database}` for one
/// service's pool. `waiting` above 0 for minutes means the pool is too
/// small for the load (alert `HuddleDbPoolExhausted`).
pub struct PoolCollector {
    status: Box<dyn Fn() -> deadpool::Status + Send + Sync>,
    label: Option<String>,
    gauges: [Field; 4],
}

impl PoolCollector {
    pub fn new(db: Database, database: &str) -> prometheus::Result<Self> {
        Self::build(
            "huddle_db_pool",
            "Postgres pool",
            Some(database),
            Box::new(move || db.pool.status()),
        )
    }

    /// The cache's Redis pool (one per process, shared by its services).
    pub fn redis(cache: cache_core::Cache) -> prometheus::Result<Self> {
        Self::build(
            "huddle_redis_pool",
            "Redis pool",
            None,
            Box::new(move || cache.pool_status()),
        )
    }

    fn build(
        prefix: &str,
        what: &str,
        database: Option<&str>,
        status: Box<dyn Fn() -> deadpool::Status + Send + Sync>,
    ) -> prometheus::Result<Self> {
        let labels: &[&str] = if database.is_some() {
            &["database"]
        } else {
            &[]
        };
        let gauge = |suffix: &str, help: &str| {
            IntGaugeVec::new(
                Opts::new(format!("{prefix}_{suffix}"), format!("{what}: {help}")),
                labels,
            )
        };
        Ok(Self {
            status,
            label: database.map(str::to_owned),
            gauges: [
                (gauge("max_size", "configured maximum connections")?, |s| {
                    s.max_size
                }),
                (gauge("size", "connections open")?, |s| s.size),
                (gauge("available", "open connections idle")?, |s| {
                    s.available
                }),
                (
                    gauge("waiting", "checkouts waiting for a connection")?,
                    |s| s.waiting,
                ),
            ],
        })
    }

    /// Registers the Postgres pool's gauges; call once per process and pool.
    pub fn register(
        db: Database,
        database: &str,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<()> {
        registry.register(Box::new(Self::new(db, database)?))
    }

    /// Registers the Redis pool's gauges; call once per process.
    pub fn register_redis(
        cache: cache_core::Cache,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<()> {
        registry.register(Box::new(Self::redis(cache)?))
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.iter().flat_map(|(g, _)| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = (self.status)();
        let labels: Vec<&str> = self.label.as_deref().into_iter().collect();
        self.gauges
            .iter()
            .flat_map(|(g, read)| {
                g.with_label_values(&labels)
                    .set(i64::try_from(read(&status)).unwrap_or(i64::MAX));
                g.collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gauges follow the pool: one connection checked out shows as
    /// size 1, available 0. Seen to fail with `collect` reporting a fixed
    /// `deadpool::Status::default()` (size stayed 0).
    #[tokio::test]
    async fn gauges_follow_the_pool() -> Result<(), Box<dyn std::error::Error>> {
        let db = Database::connect(
            &crate::database_url(&crate::testing::server_url(), "postgres")?,
            3,
        )?;
        let registry = prometheus::Registry::new();
        PoolCollector::register(db.clone(), "postgres", &registry)?;
        let conn = db.conn().await?;
        let value = |name: &str| -> Option<f64> {
            registry
                .gather()
                .into_iter()
                .find(|f| f.name() == name)
                .and_then(|f| f.get_metric().first().map(|m| m.get_gauge().get_value()))
        };
        assert_eq!(value("huddle_db_pool_max_size"), Some(3.0));
        assert_eq!(value("huddle_db_pool_size"), Some(1.0));
        assert_eq!(value("huddle_db_pool_available"), Some(0.0));
        assert_eq!(value("huddle_db_pool_waiting"), Some(0.0));
        drop(conn);
        assert_eq!(value("huddle_db_pool_available"), Some(1.0));
        Ok(())
    }

    /// The Redis pool's gauges (through `Cache::pool_status`): after one
    /// command the pool holds one open, idle connection. Seen to fail with
    /// `pool_status` returning `Status::default()`-like zeros (size 0).
    #[tokio::test]
    async fn redis_gauges_follow_the_cache_pool() -> Result<(), Box<dyn std::error::Error>> {
        let registry = prometheus::Registry::new();
        let config = cache_core::CacheConfig {
            redis_url: std::env::var("HUDDLE_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            op_timeout: std::time::Duration::from_millis(500),
            ..cache_core::CacheConfig::default()
        };
        let cache =
            cache_core::Cache::new(&config, cache_core::CacheMetrics::register(&registry)?)?;
        PoolCollector::register_redis(cache.clone(), &registry)?;
        cache.ping().await?;
        let value = |name: &str| -> Option<f64> {
            registry
                .gather()
                .into_iter()
                .find(|f| f.name() == name)
                .and_then(|f| f.get_metric().first().map(|m| m.get_gauge().get_value()))
        };
        assert_eq!(value("huddle_redis_pool_size"), Some(1.0));
        assert_eq!(value("huddle_redis_pool_available"), Some(1.0));
        assert_eq!(
            value("huddle_redis_pool_max_size"),
            Some(config.pool_size as f64)
        );
        Ok(())
    }
}
