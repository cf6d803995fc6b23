//! A local stand-in for the LiveKit server, for `huddle all` in dev and for
//! the tests (LiveKit's server binary cannot be installed here). It speaks
//! the Twirp routes Huddle calls — `livekit.Egress/StartRoomCompositeEgress`,
//! `StopEgress`, `ListEgress` and `livekit.RoomService/ListParticipants`, in
//! LiveKit's protobuf encoding — checks each call's bearer token as LiveKit
//! does (HS256 with the API secret, `iss` = the API key, unexpired, and the
//! grant the route needs: `roomRecord` for egress, `roomAdmin` on the room
//! for its participants), and posts signed webhooks back as an egress
//! moves: started → `egress_started`, stopped → `egress_ended` (COMPLETE,
//! with a file). Never started outside dev.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use livekit_api::access_token::{Claims, TokenVerifier};
use livekit_protocol as lk;
use prost::Message;
use recording_service::LivekitKeys;

/// What the stand-in knows: egresses by id and who is in each room.
#[derive(Default)]
struct State {
    egresses: HashMap<String, lk::EgressInfo>,
    /// The file path template of each egress's request.
    paths: HashMap<String, String>,
    rooms: HashMap<String, Vec<lk::ParticipantInfo>>,
}

struct Shared {
    keys: LivekitKeys,
    state: Mutex<State>,
    /// Where webhooks go (`…/api/webhooks/livekit`); none until set.
    webhook_url: Mutex<Option<String>>,
    /// Tests drop webhooks to exercise reconciliation.
    drop_webhooks: std::sync::atomic::AtomicBool,
    http: reqwest::Client,
}

/// A running stand-in; it stops with the process (or [`StandIn::stop`]).
#[derive(Clone)]
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

impl StandIn {
    /// Binds a free loopback port and serves until stopped.
    pub fn start(keys: LivekitKeys) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            keys,
            state: Mutex::new(State::default()),
            webhook_url: Mutex::new(None),
            drop_webhooks: false.into(),
            http: reqwest::Client::new(),
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/twirp/livekit.{service}/{method}", web::post().to(twirp))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            addr,
            shared,
            handle,
        })
    }

    /// The URL clients and the server SDK are given (`ws://`, as LiveKit's).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn set_webhook_url(&self, url: String) {
        *lock(&self.shared.webhook_url) = Some(url);
    }

    pub fn drop_webhooks(&self, drop: bool) {
        (self.shared.drop_webhooks).store(drop, std::sync::atomic::Ordering::SeqCst);
    }

    /// Puts `identity` in `room`, as a client connecting would.
    pub fn connect(&self, room: &str, identity: &str) {
        let participant = lk::ParticipantInfo {
            sid: format!("PA_{}", uuid::Uuid::new_v4().simple()),
            identity: identity.to_owned(),
            state: lk::participant_info::State::Active.into(),
            joined_at: now_ns() / 1_000_000_000,
            ..Default::default()
        };
        let mut state = lock(&self.shared.state);
        let people = state.rooms.entry(room.to_owned()).or_default();
        people.retain(|p| p.identity != identity);
        people.push(participant);
    }

    pub fn disconnect(&self, room: &str, identity: &str) {
        if let Some(people) = lock(&self.shared.state).rooms.get_mut(room) {
            people.retain(|p| p.identity != identity);
        }
    }

    /// The egress as the stand-in holds it.
    pub fn egress(&self, id: &str) -> Option<lk::EgressInfo> {
        lock(&self.shared.state).egresses.get(id).cloned()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A Twirp error as LiveKit answers it: JSON `{code, msg}`.
fn twirp_error(status: u16, code: &str, msg: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(serde_json::json!({"code": code, "msg": msg}))
}

fn reply(message: &impl Message) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/protobuf")
        .body(message.encode_to_vec())
}

/// The call's verified claims, as LiveKit's auth middleware checks them.
fn claims(req: &HttpRequest, keys: &LivekitKeys) -> Result<Claims, String> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let token = header.strip_prefix("Bearer ").unwrap_or_default();
    TokenVerifier::with_api_key(&keys.api_key, &keys.api_secret)
        .verify(token)
        .map_err(|e| format!("invalid token: {e}"))
}

async fn twirp(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let claims = match claims(&req, &shared.keys) {
        Ok(claims) => claims,
        Err(why) => return twirp_error(401, "unauthenticated", &why),
    };
    let (service, method) = path.into_inner();
    let shared = shared.into_inner();
    match (service.as_str(), method.as_str()) {
        ("Egress", _) if !claims.video.room_record => {
            twirp_error(403, "permission_denied", "requires roomRecord")
        }
        ("Egress", "StartRoomCompositeEgress") => decode(&body, |r| start(&shared, r)),
        ("Egress", "StopEgress") => decode(&body, |r| stop(&shared, r)),
        ("Egress", "ListEgress") => decode(&body, |r| list(&shared, &r)),
        ("RoomService", "ListParticipants") => decode(&body, |r: lk::ListParticipantsRequest| {
            if !(claims.video.room_admin && claims.video.room == r.room) {
                return twirp_error(403, "permission_denied", "requires roomAdmin on the room");
            }
            let participants = lock(&shared.state).rooms.get(&r.room).cloned();
            reply(&lk::ListParticipantsResponse {
                participants: participants.unwrap_or_default(),
            })
        }),
        _ => twirp_error(404, "bad_route", "no such method here"),
    }
}

fn decode<R: Message + Default>(body: &[u8], then: impl FnOnce(R) -> HttpResponse) -> HttpResponse {
    match R::decode(body) {
        Ok(request) => then(request),
        Err(e) => twirp_error(400, "malformed", &e.to_string()),
    }
}

fn start(shared: &Arc<Shared>, req: lk::RoomCompositeEgressRequest) -> HttpResponse {
    if req.room_name.is_empty() {
        return twirp_error(400, "invalid_argument", "room_name is required");
    }
    let Some(path) = req.file_outputs.first().map(|f| f.filepath.clone()) else {
        return twirp_error(400, "invalid_argument", "a file output is required");
    };
    let egress_id = format!("EG_{}", uuid::Uuid::new_v4().simple());
    let info = lk::EgressInfo {
        egress_id: egress_id.clone(),
        room_name: req.room_name.clone(),
        status: lk::EgressStatus::EgressStarting.into(),
        updated_at: now_ns(),
        ..Default::default()
    };
    {
        let mut state = lock(&shared.state);
        state.egresses.insert(egress_id.clone(), info.clone());
        state.paths.insert(egress_id.clone(), path);
    }
    // LiveKit reports the egress active a moment after answering.
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let active = {
            let mut state = lock(&shared.state);
            let Some(e) = state.egresses.get_mut(&egress_id) else {
                return;
            };
            if e.status == i32::from(lk::EgressStatus::EgressStarting) {
                e.status = lk::EgressStatus::EgressActive.into();
                e.started_at = now_ns();
                e.updated_at = e.started_at;
            }
            e.clone()
        };
        send_webhook(&shared, "egress_started", active).await;
    });
    reply(&info)
}

fn stop(shared: &Arc<Shared>, req: lk::StopEgressRequest) -> HttpResponse {
    let ended = {
        let mut state = lock(&shared.state);
        let path = state.paths.get(&req.egress_id).cloned().unwrap_or_default();
        let Some(e) = state.egresses.get_mut(&req.egress_id) else {
            return twirp_error(404, "not_found", "egress does not exist");
        };
        let live = [
            lk::EgressStatus::EgressStarting,
            lk::EgressStatus::EgressActive,
        ]
        .map(i32::from)
        .contains(&e.status);
        if !live {
            let msg = "egress with status EGRESS_COMPLETE cannot be stopped";
            return twirp_error(412, "failed_precondition", msg);
        }
        complete(e, &path);
        e.clone()
    };
    // LiveKit answers a stop with the egress ENDING; COMPLETE, with its
    // file, comes in the `egress_ended` webhook.
    let answer = reply(&lk::EgressInfo {
        status: lk::EgressStatus::EgressEnding.into(),
        file_results: Vec::new(),
        ended_at: 0,
        ..ended.clone()
    });
    let shared = shared.clone();
    tokio::spawn(async move { send_webhook(&shared, "egress_ended", ended).await });
    answer
}

/// COMPLETE with one file, as an egress that recorded since it started.
fn complete(e: &mut lk::EgressInfo, path: &str) {
    let now = now_ns();
    if e.started_at == 0 {
        e.started_at = now;
    }
    let location = path
        .replace("{room_name}", &e.room_name)
        .replace("{time}", &now.to_string());
    let duration = (now - e.started_at).max(1_000_000_000);
    e.status = lk::EgressStatus::EgressComplete.into();
    e.ended_at = now;
    e.updated_at = now;
    e.file_results = vec![lk::FileInfo {
        filename: location.rsplit('/').next().unwrap_or_default().to_owned(),
        started_at: e.started_at,
        ended_at: now,
        duration,
        size: duration / 1000,
        location,
    }];
}

fn list(shared: &Shared, req: &lk::ListEgressRequest) -> HttpResponse {
    let live = [
        lk::EgressStatus::EgressStarting,
        lk::EgressStatus::EgressActive,
    ]
    .map(i32::from);
    let items = lock(&shared.state)
        .egresses
        .values()
        .filter(|e| req.room_name.is_empty() || e.room_name == req.room_name)
        .filter(|e| req.egress_id.is_empty() || e.egress_id == req.egress_id)
        .filter(|e| !req.active || live.contains(&e.status))
        .cloned()
        .collect();
    reply(&lk::ListEgressResponse {
        items,
        ..Default::default()
    })
}

/// Posts `event` for `egress` as LiveKit does: JSON body, `Authorization`
/// a token whose `sha256` claim is the body's. Failures are logged (LiveKit
/// would retry; the reconciliation pass covers what is lost).
async fn send_webhook(shared: &Shared, event: &str, egress: lk::EgressInfo) {
    let Some(url) = lock(&shared.webhook_url).clone() else {
        return;
    };
    if shared
        .drop_webhooks
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        tracing::info!(event, egress = %egress.egress_id, "livekit stand-in: webhook dropped");
        return;
    }
    let body = lk::WebhookEvent {
        event: event.to_owned(),
        egress_info: Some(egress),
        id: format!("EV_{}", uuid::Uuid::new_v4().simple()),
        created_at: now_ns() / 1_000_000_000,
        ..Default::default()
    };
    let Ok(body) = serde_json::to_string(&body) else {
        return;
    };
    let Ok(auth) = shared.keys.sign(body.as_bytes()) else {
        return;
    };
    let sent = (shared.http.post(&url))
        .header("content-type", "application/webhook+json")
        .header("authorization", auth)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => {}
        Ok(resp) => {
            tracing::warn!(event, status = %resp.status(), "livekit stand-in: webhook refused")
        }
        Err(e) => tracing::warn!(event, error = %e, "livekit stand-in: webhook not delivered"),
    }
}
