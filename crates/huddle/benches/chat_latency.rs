//! Post → delivery latency of the chat stream (`scripts/bench-chat.sh`
//! runs it against live processes; not standalone).
//!
//! Opens `HUDDLE_BENCH_STREAMS` (default 1000) SSE streams on
//! `HUDDLE_BENCH_STREAM_BASE` (one gateway), then posts
//! `HUDDLE_BENCH_MESSAGES` (default 200) messages through
//! `HUDDLE_BENCH_POST_BASE` (another gateway) at `HUDDLE_BENCH_RATE` per
//! second (default 20), and reports p50/p99/max of the time from sending a
//! post to each stream receiving it, and whether every stream got every
//! message once. Tokens: `HUDDLE_BENCH_TOKENS_FILE`, one per line (the
//! first posts; streams take them in turn).

// A benchmark binary may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use eventsource_stream::Eventsource;
use futures::StreamExt;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") || std::env::var("HUDDLE_BENCH_POST_BASE").is_err()
    {
        println!("run by scripts/bench-chat.sh (make bench), against live processes");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let post_base = env("HUDDLE_BENCH_POST_BASE", "");
    let stream_base = env("HUDDLE_BENCH_STREAM_BASE", "");
    let meeting = env("HUDDLE_BENCH_MEETING", "");
    let streams: usize = env("HUDDLE_BENCH_STREAMS", "1000").parse().unwrap();
    let messages: usize = env("HUDDLE_BENCH_MESSAGES", "200").parse().unwrap();
    let rate: f64 = env("HUDDLE_BENCH_RATE", "20").parse().unwrap();
    let tokens: Vec<String> = std::fs::read_to_string(env("HUDDLE_BENCH_TOKENS_FILE", ""))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let marker = format!("lat-{}", std::process::id());
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; messages]));
    let received: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut readers = Vec::with_capacity(streams);
    let opened = Instant::now();
    for i in 0..streams {
        let token = tokens[i % tokens.len()].clone();
        let resp = http
            .get(format!("{stream_base}/api/meetings/{meeting}/chats/stream"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "stream {i}");
        let (received, marker) = (received.clone(), marker.clone());
        readers.push(tokio::spawn(async move {
            let mut events = resp.bytes_stream().eventsource();
            let mut got = 0;
            while let Some(Ok(event)) = events.next().await {
                let at = Instant::now();
                let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                let text = data["message"].as_str().unwrap_or_default();
                if let Some(n) = text.strip_prefix(&format!("{marker} ")) {
                    received.lock().unwrap().push((n.parse().unwrap(), at));
                    got += 1;
                    if got == messages {
                        return;
                    }
                }
            }
        }));
    }
    println!(
        "{streams} streams open on {stream_base} in {:.1} s",
        opened.elapsed().as_secs_f64()
    );

    let poster = tokens[0].clone();
    let gap = Duration::from_secs_f64(1.0 / rate);
    for n in 0..messages {
        let started = Instant::now();
        sent.lock().unwrap()[n] = Some(started);
        let resp = http
            .post(format!("{post_base}/api/meetings/{meeting}/chats"))
            .bearer_auth(&poster)
            .json(&serde_json::json!({"message": format!("{marker} {n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED, "post {n}");
        tokio::time::sleep(gap.saturating_sub(started.elapsed())).await;
    }
    let all_done = futures::future::join_all(readers);
    let finished = tokio::time::timeout(Duration::from_secs(30), all_done)
        .await
        .is_ok();

    let sent = sent.lock().unwrap();
    let mut latencies: Vec<Duration> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(n, at)| at.duration_since(sent[*n].unwrap()))
        .collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "post → delivery over {streams} streams × {messages} messages at {rate}/s: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {} deliveries{}",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        latencies.len(),
        streams * messages,
        if finished {
            ""
        } else {
            " (timed out waiting for the rest)"
        }
    );
}
