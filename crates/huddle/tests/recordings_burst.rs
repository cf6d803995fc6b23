//! A burst of LiveKit webhooks through the gateway: 50 meetings, each
//! egress's started/updated/ended delivered out of order and replayed (500
//! deliveries by default), 16 in flight. Every answer is 2xx and every row
//! ends READY with its file; the rate is printed. `scripts/bench-webhooks.sh`
//! runs it larger (HUDDLE_BENCH_WEBHOOK_MEETINGS).

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::{TestApp, egress_webhook, livekit_keys};
use futures::{StreamExt, stream};
use uuid::Uuid;

const STARTED_NS: i64 = 1_780_000_000_000_000_000;
const IN_FLIGHT: usize = 16;

/// One meeting's 10 deliveries: every event, the ended one first in half
/// the meetings, and replays of each.
fn deliveries(meeting: &str, i: usize) -> Vec<String> {
    let egress = format!("EG_{meeting}");
    let order: &[&str] = if i.is_multiple_of(2) {
        &["egress_ended", "egress_started", "egress_updated"]
    } else {
        &["egress_started", "egress_updated", "egress_ended"]
    };
    let mut bodies: Vec<String> = order
        .iter()
        .map(|e| {
            egress_webhook(e, meeting, &egress, STARTED_NS)
                .to_json()
                .unwrap()
        })
        .collect();
    let replays: Vec<String> = (0..7).map(|k| bodies[(k + i) % 3].clone()).collect();
    bodies.extend(replays);
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_webhooks_through_the_gateway() {
    let app = TestApp::spawn().await;
    let meetings: usize = std::env::var("HUDDLE_BENCH_WEBHOOK_MEETINGS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let ids: Vec<String> = (0..meetings).map(|_| Uuid::new_v4().to_string()).collect();
    // Interleave meetings, so deliveries of one egress race each other.
    let per_meeting: Vec<Vec<String>> = ids
        .iter()
        .enumerate()
        .map(|(i, m)| deliveries(m, i))
        .collect();
    let bodies: Vec<String> = (0..10)
        .flat_map(|k| per_meeting.iter().map(move |d| d[k].clone()))
        .collect();
    let keys = livekit_keys();
    let signed: Vec<(String, String)> = bodies
        .into_iter()
        .map(|b| {
            let auth = keys.sign(b.as_bytes()).unwrap();
            (b, auth)
        })
        .collect();
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(&signed)
        .map(|(body, auth)| async { app.post_webhook(body, Some(auth)).await.status.as_u16() })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failed: Vec<_> = statuses
        .iter()
        .filter(|s| !(200..300).contains(*s))
        .collect();
    assert!(
        failed.is_empty(),
        "{} non-2xx answers: {failed:?}",
        failed.len()
    );
    println!(
        "{} webhooks for {meetings} meetings in {:.2} s: {:.0} webhooks/s ({IN_FLIGHT} in flight)",
        statuses.len(),
        elapsed.as_secs_f64(),
        statuses.len() as f64 / elapsed.as_secs_f64()
    );

    let mut conn = app.recording_db.conn().await.unwrap();
    for id in &ids {
        let rows = recording_service::db::newest(&mut conn, id.parse().unwrap(), 10)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{id}");
        let row = &rows[0];
        assert_eq!(row.status, "READY", "{id}");
        assert_eq!(row.egress_id, format!("EG_{id}"));
        assert_eq!(
            row.file_url.as_deref(),
            Some(format!("s3://recordings/EG_{id}.mp4").as_str())
        );
        assert_eq!(
            (row.duration_seconds, row.file_size_bytes),
            (Some(61), Some(7_654_321))
        );
    }
}
