//! What diesel-async (over tokio-postgres) sends through a pooler, and what
//! each way of avoiding long-lived prepared statements costs.
//!
//! `cargo run -p huddle-db --example pgbouncer_probe -- URL [QUERIES] [TASKS]`
//! runs QUERIES parameterised queries from TASKS concurrent connections
//! (each its own pool checkout, as requests are) in three modes, and
//! prints per mode the failures by message and the p50/p99 of a query:
//!
//! - `cached`: diesel-async's default (named statements, cached per
//!   connection);
//! - `uncached`: `CacheSize::Disabled`, every query prepares its named
//!   statement (`s<N>`, Parse + Describe + Sync), binds and executes it
//!   (Bind + Execute + Sync) and closes it — three round trips;
//! - `in_tx`: the same, inside one transaction per checkout (BEGIN,
//!   query, COMMIT), so a transaction pooler keeps the checkout on one
//!   server connection throughout.
//!
//! `scripts/pgbouncer-probe.sh` runs it against a private PgBouncer in
//! transaction mode and against Postgres directly (ARCHITECTURE.md, "Behind
//! a transaction pooler").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{collections::BTreeMap, time::Instant};

use diesel::{connection::CacheSize, sql_types::Integer};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool::Pool,
    },
};

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Integer)]
    n: i32,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Cached,
    Uncached,
    InTx,
    /// `InTx`, and the pool reuses a connection without its `SELECT 1`
    /// check (diesel-async's default `Verified`), which runs outside any
    /// transaction.
    InTxFastRecycle,
    /// `InTx`, with a reuse check in the simple protocol (`SELECT 1` in one
    /// message) and a connection setup whose statements diesel-async runs
    /// inside a transaction that also deallocates them: nothing prepared
    /// outlives a transaction.
    Carried,
}

/// diesel-async's setup prepares `SET TIME ZONE` and `SET CLIENT_ENCODING`
/// (pipelined, each with its own Sync): run inside BEGIN … COMMIT, with
/// the statements deallocated before the COMMIT, so a transaction pooler
/// keeps them on one server and leaves nothing prepared there.
async fn carried_connect(url: String) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel_async::SimpleAsyncConnection;
    let bad = |e: tokio_postgres::Error| diesel::ConnectionError::BadConnection(e.to_string());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(bad)?;
    tokio::spawn(connection);
    client.batch_execute("BEGIN").await.map_err(bad)?;
    let mut conn = AsyncPgConnection::try_from(client).await?;
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    conn.batch_execute("DEALLOCATE ALL; COMMIT")
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

fn pool(url: &str, mode: Mode, size: usize) -> Pool<AsyncPgConnection> {
    let mut config = ManagerConfig::default();
    if matches!(mode, Mode::InTxFastRecycle) {
        config.recycling_method = RecyclingMethod::Fast;
    }
    if matches!(mode, Mode::Carried) {
        use diesel_async::SimpleAsyncConnection;
        use futures::FutureExt;
        config.recycling_method =
            RecyclingMethod::CustomFunction(Box::new(|conn: &mut AsyncPgConnection| {
                async move { conn.batch_execute("SELECT 1").await }.boxed()
            }));
        config.custom_setup = Box::new(|url| carried_connect(url.to_owned()).boxed());
    }
    let manager = AsyncDieselConnectionManager::new_with_config(url, config);
    Pool::builder(manager).max_size(size).build().unwrap()
}

async fn one(conn: &mut AsyncPgConnection, i: i32) -> Result<i32, diesel::result::Error> {
    let rows: Vec<Row> = diesel::sql_query("SELECT $1::int4 + 1 AS n")
        .bind::<Integer, _>(i)
        .load(conn)
        .await?;
    Ok(rows.as_slice().first().map_or(0, |r| r.n))
}

/// The message with statement names (`"s1234"`) folded into `"sN"`, so
/// failures group by kind.
fn kind(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"s") {
        let (head, tail) = rest.split_at(at + 2);
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

async fn run(db: &Pool<AsyncPgConnection>, mode: Mode, queries: usize, tasks: usize) {
    let per_task = queries / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_task);
                let mut errors: BTreeMap<String, usize> = BTreeMap::new();
                for q in 0..per_task {
                    let i = i32::try_from(t * per_task + q).unwrap_or(0);
                    let began = Instant::now();
                    let mut conn = match db.get().await {
                        Ok(conn) => conn,
                        Err(e) => {
                            *errors.entry(kind(&e)).or_default() += 1;
                            continue;
                        }
                    };
                    let cache = match mode {
                        Mode::Cached => CacheSize::Unbounded,
                        _ => CacheSize::Disabled,
                    };
                    conn.set_prepared_statement_cache_size(cache);
                    let result = match mode {
                        Mode::InTx | Mode::InTxFastRecycle | Mode::Carried => {
                            conn.transaction(async |c| one(c, i).await).await
                        }
                        Mode::Cached | Mode::Uncached => one(&mut conn, i).await,
                    };
                    match result {
                        Ok(n) if n == i + 1 => times.push(began.elapsed()),
                        Ok(n) => *errors.entry(format!("wrong answer {n}")).or_default() += 1,
                        Err(e) => *errors.entry(e.to_string()).or_default() += 1,
                    }
                }
                (times, errors)
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for handle in handles {
        let (t, e) = handle.await.unwrap();
        times.extend(t);
        for (message, n) in e {
            *errors.entry(message).or_default() += n;
        }
    }
    times.sort();
    let at = |p: f64| {
        times
            .get(((times.len() as f64) * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{mode:?}: {} ok, {} failed in {:.1} s; p50 {:.3} ms, p99 {:.3} ms",
        times.len(),
        errors.values().sum::<usize>(),
        started.elapsed().as_secs_f64(),
        at(0.5),
        at(0.99)
    );
    for (message, n) in errors {
        println!("    {n} × {message}");
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: pgbouncer_probe URL [QUERIES] [TASKS]");
    let queries = args.next().map_or(2000, |a| a.parse().unwrap());
    let tasks = args.next().map_or(8, |a| a.parse().unwrap());
    for mode in [
        Mode::Cached,
        Mode::Uncached,
        Mode::InTx,
        Mode::InTxFastRecycle,
        Mode::Carried,
    ] {
        // A pool per mode: no statement cached in one mode serves another.
        let db = pool(&url, mode, tasks);
        run(&db, mode, queries, tasks).await;
        db.close();
    }
}
