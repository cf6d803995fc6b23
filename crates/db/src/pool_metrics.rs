//! The Postgres pool's state as Prometheus gauges, read at scrape time
//! (deadpool's `status()` is a few atomic loads), so nothing has to update
//! them on every checkout.

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
    db: Database,
    database: String,
    gauges: [Field; 4],
}

impl PoolCollector {
    pub fn new(db: Database, database: &str) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["database"]);
        Ok(Self {
            db,
            database: database.to_owned(),
            gauges: [
                (
                    gauge(
                        "huddle_db_pool_max_size",
                        "Postgres pool: configured maximum connections",
                    )?,
                    |s| s.max_size,
                ),
                (
                    gauge("huddle_db_pool_size", "Postgres pool: connections open")?,
                    |s| s.size,
                ),
                (
                    gauge(
                        "huddle_db_pool_available",
                        "Postgres pool: open connections idle",
                    )?,
                    |s| s.available,
                ),
                (
                    gauge(
                        "huddle_db_pool_waiting",
                        "Postgres pool: checkouts waiting for a connection",
                    )?,
                    |s| s.waiting,
                ),
            ],
        })
    }

    /// Registers it; call once per process and pool.
    pub fn register(
        db: Database,
        database: &str,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<()> {
        registry.register(Box::new(Self::new(db, database)?))
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.iter().flat_map(|(g, _)| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = self.db.pool.status();
        self.gauges
            .iter()
            .flat_map(|(g, read)| {
                g.with_label_values(&[self.database.as_str()])
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
}
