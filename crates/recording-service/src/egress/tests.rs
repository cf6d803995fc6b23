#![allow(clippy::unwrap_used, clippy::expect_used)]

use livekit_protocol::{EgressInfo, FileInfo};

use super::*;

const STARTED_NS: i64 = 1_780_000_000_000_000_000;

fn event(name: &str, room: &str, status: EgressStatus, file: Option<FileInfo>) -> WebhookEvent {
    WebhookEvent {
        event: name.to_owned(),
        egress_info: Some(EgressInfo {
            egress_id: "EG_1".to_owned(),
            room_name: room.to_owned(),
            status: status.into(),
            started_at: STARTED_NS,
            ended_at: if file.is_some() {
                STARTED_NS + 90_000_000_000
            } else {
                0
            },
            file_results: file.into_iter().collect(),
            ..EgressInfo::default()
        }),
        created_at: 1_780_000_100,
        ..WebhookEvent::default()
    }
}

fn seen(event: &WebhookEvent) -> Seen {
    match parse(event).unwrap() {
        Parsed::Egress(seen) => *seen,
        other => panic!("{other:?}"),
    }
}

fn file() -> FileInfo {
    FileInfo {
        location: "s3://bucket/rec.mp4".to_owned(),
        duration: 89_600_000_000,
        size: 12_345,
        ..FileInfo::default()
    }
}

#[test]
fn egress_statuses_map_per_spec() {
    use EgressStatus::*;
    for (egress, ours) in [
        (EgressStarting, Status::Processing),
        (EgressActive, Status::Processing),
        (EgressEnding, Status::Processing),
        (EgressComplete, Status::Ready),
        (EgressFailed, Status::Failed),
        (EgressAborted, Status::Failed),
        (EgressLimitReached, Status::Failed),
    ] {
        assert_eq!(Status::from_egress(egress), ours, "{egress:?}");
    }
}

#[test]
fn the_first_file_result_gives_url_duration_in_seconds_and_size() {
    let room = Uuid::new_v4();
    let s = seen(&event(
        "egress_ended",
        &room.to_string(),
        EgressStatus::EgressComplete,
        Some(file()),
    ));
    assert_eq!(s.meeting, room);
    assert_eq!(s.file_url.as_deref(), Some("s3://bucket/rec.mp4"));
    assert_eq!(s.duration_seconds, Some(90), "89.6 s rounds to 90");
    assert_eq!(s.file_size_bytes, Some(12_345));
    assert_eq!(ns_to_seconds(1_499_999_999), 1);
    assert_eq!(ns_to_seconds(1_500_000_000), 2);
}

#[test]
fn other_events_and_rooms_that_are_no_meeting_are_ignored() {
    let room = Uuid::new_v4().to_string();
    let e = event("room_started", &room, EgressStatus::EgressActive, None);
    assert!(matches!(parse(&e).unwrap(), Parsed::OtherEvent));
    let e = event("egress_started", "lobby", EgressStatus::EgressActive, None);
    assert!(matches!(parse(&e).unwrap(), Parsed::UnknownRoom(r) if r == "lobby"));
}

#[test]
fn malformed_egress_events_are_invalid_arguments() {
    let room = Uuid::new_v4().to_string();
    let mut no_info = event("egress_updated", &room, EgressStatus::EgressActive, None);
    no_info.egress_info = None;
    let mut no_id = event("egress_updated", &room, EgressStatus::EgressActive, None);
    no_id.egress_info.as_mut().unwrap().egress_id = String::new();
    let mut nul = event("egress_updated", &room, EgressStatus::EgressActive, None);
    nul.egress_info.as_mut().unwrap().egress_id = "EG\u{0}".to_owned();
    let mut status = event("egress_updated", &room, EgressStatus::EgressActive, None);
    status.egress_info.as_mut().unwrap().status = 99;
    let negative = FileInfo { size: -1, ..file() };
    let negative = event(
        "egress_ended",
        &room,
        EgressStatus::EgressComplete,
        Some(negative),
    );
    for e in [no_info, no_id, nul, status, negative] {
        assert!(
            matches!(parse(&e), Err(RecordingError::InvalidArgument(_))),
            "{e:?}"
        );
    }
}

#[test]
fn error_texts_lose_control_characters_and_are_bounded() {
    assert_eq!(error_text("  "), None);
    assert_eq!(error_text("bad\u{0}thing").as_deref(), Some("bad thing"));
    assert_eq!(
        error_text(&"x".repeat(5000)).unwrap().chars().count(),
        MAX_ERROR_CHARS
    );
}

/// Every order of started/updated/ended, each delivered twice, ends in the
/// same row, and a late `egress_started` changes nothing.
///
/// Seen to fail with `merge` letting any status replace the current one
/// (`forward = seen.status != current.status`): a late `egress_started`
/// moved the row back to PROCESSING ("3 changes" for [0, 2, 1]).
#[test]
fn every_order_ends_in_the_same_row() {
    let room = Uuid::new_v4().to_string();
    let events = [
        seen(&event(
            "egress_started",
            &room,
            EgressStatus::EgressStarting,
            None,
        )),
        seen(&event(
            "egress_updated",
            &room,
            EgressStatus::EgressActive,
            None,
        )),
        seen(&event(
            "egress_ended",
            &room,
            EgressStatus::EgressComplete,
            Some(file()),
        )),
    ];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let mut finals = Vec::new();
    for order in orders {
        let mut state: Option<State> = None;
        let mut changes = 0;
        for i in order.iter().flat_map(|i| [*i, *i]) {
            let next = match &state {
                None => first_state(&events[i]),
                Some(current) => merge(current, &events[i]),
            };
            if state.as_ref() != Some(&next) {
                changes += 1;
            }
            state = Some(next);
        }
        assert!(changes <= 2, "{order:?}: {changes} changes");
        finals.push(state.unwrap());
    }
    assert!(finals.iter().all(|f| *f == finals[0]), "{finals:#?}");
    assert_eq!(finals[0].status, Status::Ready);
    assert_eq!(finals[0].duration_seconds, Some(90));
}

#[test]
fn a_second_final_status_changes_nothing() {
    let room = Uuid::new_v4().to_string();
    let ready = first_state(&seen(&event(
        "egress_ended",
        &room,
        EgressStatus::EgressComplete,
        Some(file()),
    )));
    let mut failed = event("egress_ended", &room, EgressStatus::EgressFailed, None);
    failed.egress_info.as_mut().unwrap().error = "boom".to_owned();
    assert_eq!(merge(&ready, &seen(&failed)), ready);
}
