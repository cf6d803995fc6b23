//! How the meeting service talks to user-service, against a fake one that
//! counts calls: one `BatchGetUsers` per answer that shows users (never one
//! per row), cold or warm — cached values hold ids, the cards are composed
//! per answer — none for an answer that shows no user, and the caller's
//! request id carried onto every call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use cache_core::{Cache, CacheConfig, CacheMetrics};
use huddle_common::{REQUEST_ID_HEADER, Shutdown};
use huddle_proto::{
    meeting::v1::{self as pb, meeting_service_client::MeetingServiceClient},
    user::v1::{
        BatchGetUsersRequest, BatchGetUsersResponse, CreateUserRequest, GetUserByEmailRequest,
        GetUserRequest, UpdateUserRequest, User,
        user_service_server::{UserService, UserServiceServer},
    },
};
use huddle_testkit::database::TestDatabase;
use tonic::{Request, Response, Status, transport::Channel};
use uuid::Uuid;

/// Knows every user id; remembers each batch and the request id it came with.
#[derive(Default)]
struct FakeUsers {
    batches: Mutex<Vec<(Vec<String>, String)>>,
}

impl FakeUsers {
    fn take(&self) -> Vec<(Vec<String>, String)> {
        std::mem::take(&mut *self.batches.lock().unwrap())
    }
}

#[tonic::async_trait]
impl UserService for FakeUsers {
    async fn create_user(&self, _: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_user(&self, _: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_user_by_email(
        &self,
        _: Request<GetUserByEmailRequest>,
    ) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn batch_get_users(
        &self,
        request: Request<BatchGetUsersRequest>,
    ) -> Result<Response<BatchGetUsersResponse>, Status> {
        let request_id = request
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let ids = request.into_inner().ids;
        self.batches.lock().unwrap().push((ids.clone(), request_id));
        Ok(Response::new(BatchGetUsersResponse {
            users: ids
                .into_iter()
                .map(|id| User {
                    name: format!("user {}", &id[..8]),
                    id,
                    ..User::default()
                })
                .collect(),
        }))
    }

    async fn update_user(&self, _: Request<UpdateUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

struct Harness {
    client: MeetingServiceClient<Channel>,
    users: Arc<FakeUsers>,
    shutdown: Shutdown,
    _db: TestDatabase,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start() -> Harness {
    let users = Arc::new(FakeUsers::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let user_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(UserServiceServer::from_arc(users.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let db = TestDatabase::create("huddle_meeting", meeting_service::MIGRATIONS)
        .await
        .unwrap();
    let cache = Cache::new(
        &CacheConfig {
            redis_url: std::env::var("HUDDLE_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            prefix: format!("huddle:test-{}:", Uuid::new_v4().simple()),
            op_timeout: Duration::from_millis(500),
            ..CacheConfig::default()
        },
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap();
    let shutdown = Shutdown::new();
    let bound = meeting_service::bind(
        &meeting_service::MeetingConfig {
            service: huddle_serve::ServiceConfig {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                database_url: db.url().to_owned(),
                db_pool_size: 4,
            },
            user_addr: format!("http://{user_addr}"),
            user_call_timeout: Duration::from_secs(5),
            recording_addr: None,
            chat_addr: None,
        },
        huddle_serve::Shared {
            cache,
            grpc_metrics: huddle_serve::GrpcMetrics::register(&prometheus::Registry::new())
                .unwrap(),
            shutdown: shutdown.clone(),
        },
    )
    .await
    .unwrap();
    let addr = bound.service.addr;
    tokio::spawn(bound.service.server);
    let client = MeetingServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Harness {
        client,
        users,
        shutdown,
        _db: db,
    }
}

fn with_id<T>(message: T, request_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(REQUEST_ID_HEADER, request_id.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_call_per_answer_with_the_request_id() {
    let mut h = start().await;
    let host = Uuid::new_v4().to_string();
    let meeting = h
        .client
        .create_meeting(with_id(
            pb::CreateMeetingRequest {
                caller_id: host.clone(),
                title: "Big one".into(),
                status: pb::MeetingStatus::Live.into(),
                ..Default::default()
            },
            "req-create",
        ))
        .await
        .unwrap()
        .into_inner();
    // The host's existence was checked with the caller's request id.
    assert_eq!(
        h.users.take(),
        [(vec![host.clone()], "req-create".to_owned())]
    );

    let guests: Vec<String> = (0..6).map(|_| Uuid::new_v4().to_string()).collect();
    for guest in &guests {
        let joined = h
            .client
            .join_meeting(pb::JoinMeetingRequest {
                caller_id: guest.clone(),
                invite_code: meeting.invite_code.clone().unwrap(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(joined.meeting.unwrap().host.is_some());
        // The host's card and the caller's registration: one batch.
        let calls = h.users.take();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let mut expected = vec![host.clone(), guest.clone()];
        expected.sort();
        assert_eq!(calls[0].0, expected);
    }

    let list = h
        .client
        .list_participants(with_id(
            pb::ListParticipantsRequest {
                caller_id: host.clone(),
                id: meeting.id.clone(),
                ..Default::default()
            },
            "req-list",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.participants.len(), 7);
    assert!(list.participants.iter().all(|p| p.user.is_some()));
    let calls = h.users.take();
    assert_eq!(calls.len(), 1, "one batch for seven rows: {calls:?}");
    let (ids, request_id) = &calls[0];
    assert_eq!(ids.len(), 7);
    assert_eq!(request_id, "req-list");

    // Served from the cache: the cards are still composed, in one call.
    h.client
        .list_participants(pb::ListParticipantsRequest {
            caller_id: host.clone(),
            id: meeting.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let calls = h.users.take();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0.len(), 7);

    // An access check shows no user: no call.
    h.client
        .check_access(pb::CheckAccessRequest {
            caller_id: guests[0].clone(),
            meeting_id: meeting.id.clone(),
        })
        .await
        .unwrap();
    assert!(h.users.take().is_empty());

    // Three live meetings by three hosts: one batch for the whole list.
    for _ in 0..2 {
        h.client
            .create_meeting(pb::CreateMeetingRequest {
                caller_id: Uuid::new_v4().to_string(),
                title: "Another".into(),
                status: pb::MeetingStatus::Live.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    h.users.take();
    let live = h
        .client
        .list_live_meetings(with_id(pb::ListLiveMeetingsRequest {}, "req-live"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.meetings.len(), 3);
    let calls = h.users.take();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0.len(), 3);
    assert_eq!(calls[0].1, "req-live");

    // Meeting details for the host: one call (the host's card).
    let details = h
        .client
        .get_meeting(with_id(
            pb::GetMeetingRequest {
                caller_id: host.clone(),
                id: meeting.id.clone(),
            },
            "req-details",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(details.participant_count, 7);
    assert_eq!(details.chat_message_count, None);
    assert_eq!(
        h.users.take(),
        [(vec![host.clone()], "req-details".to_owned())]
    );
    // Warm, for a participant (the membership check beside the card): one.
    h.client
        .get_meeting(pb::GetMeetingRequest {
            caller_id: guests[0].clone(),
            id: meeting.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(h.users.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_never_reach_user_service() {
    let mut h = start().await;
    let caller = Uuid::new_v4().to_string();
    let cases: Vec<(Status, &str)> = vec![
        (
            h.client
                .join_meeting(pb::JoinMeetingRequest {
                    caller_id: caller.clone(),
                    invite_code: "bad*code".into(),
                })
                .await
                .unwrap_err(),
            "inviteCode:",
        ),
        (
            h.client
                .create_meeting(pb::CreateMeetingRequest {
                    caller_id: caller.clone(),
                    title: String::new(),
                    status: pb::MeetingStatus::Live.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            "title:",
        ),
        (
            h.client
                .create_meeting(pb::CreateMeetingRequest {
                    caller_id: caller.clone(),
                    title: "t".into(),
                    status: 42,
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            "status:",
        ),
        (
            h.client
                .get_meeting(pb::GetMeetingRequest {
                    caller_id: "nope".into(),
                    id: Uuid::new_v4().to_string(),
                })
                .await
                .unwrap_err(),
            "callerId:",
        ),
    ];
    for (status, field) in cases {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    assert!(h.users.take().is_empty());
}
