//! `huddle cache …`: the guide's "Testing cache" section as a command.

use std::collections::BTreeMap;

use cache_core::{Cache, CacheMetrics};

use crate::{
    config::{CacheCommand, Global},
    run::CmdResult,
};

pub async fn run(global: &Global, cmd: CacheCommand) -> CmdResult {
    let cache = Cache::new(
        &global.cache_config(),
        CacheMetrics::register(&prometheus::Registry::new())?,
    )?;
    match cmd {
        CacheCommand::Ping => {
            let health = cache.ping().await?;
            println!("PONG ({:.2} ms)", health.round_trip.as_secs_f64() * 1000.0);
        }
        CacheCommand::Keys { pattern, limit } => {
            let keys = cache.scan(&pattern, limit).await?;
            for key in &keys {
                println!("{key}");
            }
            eprintln!("{} key(s)", keys.len());
        }
        CacheCommand::Get { key } => {
            let path = key.strip_prefix(cache.prefix()).unwrap_or(&key);
            match cache.inspect(path).await? {
                Some((value, ttl_ms)) => {
                    println!("{value}");
                    eprintln!("ttl: {:.1} s", ttl_ms as f64 / 1000.0);
                }
                None => return Err(format!("{}{path}: not cached", cache.prefix()).into()),
            }
        }
        CacheCommand::Stats { metrics_url } => stats(global, &cache, metrics_url).await?,
        CacheCommand::Flush { yes } => {
            if global.env != "dev" {
                return Err(format!(
                    "refusing to flush: HUDDLE_ENV is {:?}, not \"dev\"",
                    global.env
                )
                .into());
            }
            if !yes {
                return Err("refusing to flush without --yes".into());
            }
            let n = cache.flush_prefix().await?;
            println!("deleted {n} key(s) under {}", cache.prefix());
        }
    }
    Ok(())
}

async fn stats(global: &Global, cache: &Cache, metrics_url: Option<String>) -> CmdResult {
    let url = metrics_url.unwrap_or_else(|| format!("http://{}/metrics", global.http_addr));
    match fetch(&url).await {
        Ok(text) => {
            let table = lookups_by_key(&text);
            if table.is_empty() {
                println!("{url}: no cache lookups recorded yet");
            } else {
                println!(
                    "{:<26} {:>8} {:>8} {:>10} {:>10} {:>7}",
                    "key", "hits", "misses", "not-found", "coalesced", "hit %"
                );
                for (key, c) in &table {
                    let served = c.hit + c.not_found_hit + c.lease_wait_hit;
                    let all = served + c.miss;
                    let ratio = if all == 0 {
                        0.0
                    } else {
                        100.0 * served as f64 / all as f64
                    };
                    println!(
                        "{key:<26} {:>8} {:>8} {:>10} {:>10} {ratio:>6.1}%",
                        c.hit, c.miss, c.not_found_hit, c.coalesced
                    );
                }
            }
        }
        Err(e) => println!("{url}: unreachable ({e}); showing Redis-side figures only"),
    }
    let keys = cache.scan("*", 100_000).await?;
    println!("\nkeys under {}: {}", cache.prefix(), keys.len());
    let info = cache.server_info().await?;
    for line in info.lines() {
        if line.starts_with("keyspace_hits")
            || line.starts_with("keyspace_misses")
            || line.starts_with("db")
        {
            println!("redis {}", line.trim());
        }
    }
    Ok(())
}

async fn fetch(url: &str) -> Result<String, reqwest::Error> {
    reqwest::get(url).await?.error_for_status()?.text().await
}

#[derive(Default, Debug, PartialEq)]
struct Lookups {
    hit: u64,
    miss: u64,
    not_found_hit: u64,
    coalesced: u64,
    /// Misses answered by another process's fill (lease wait).
    lease_wait_hit: u64,
}

/// Reads `huddle_cache_lookups_total{key="…",result="…"} N` lines.
fn lookups_by_key(metrics: &str) -> BTreeMap<String, Lookups> {
    let mut table: BTreeMap<String, Lookups> = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("huddle_cache_lookups_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_owned())
        };
        let (Some(key), Some(result)) = (label("key"), label("result")) else {
            continue;
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let entry = table.entry(key).or_default();
        let slot = match result.as_str() {
            "hit" => &mut entry.hit,
            "miss" => &mut entry.miss,
            "not_found_hit" => &mut entry.not_found_hit,
            "coalesced" => &mut entry.coalesced,
            "lease_wait_hit" => &mut entry.lease_wait_hit,
            _ => continue,
        };
        *slot = value as u64;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lookup_counters() {
        let text = "# HELP x\nhuddle_cache_lookups_total{key=\"user\",result=\"hit\"} 3\n\
                    huddle_cache_lookups_total{key=\"user\",result=\"miss\"} 1\n\
                    huddle_http_requests_total{route=\"/\"} 9\n";
        let table = lookups_by_key(text);
        assert_eq!(
            table["user"],
            Lookups {
                hit: 3,
                miss: 1,
                ..Lookups::default()
            }
        );
        assert_eq!(table.len(), 1);
    }
}
