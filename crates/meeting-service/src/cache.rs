//! The meeting service's cached reads: which key, TTL and tags each uses, and
//! the shape stored under it. Keys and invalidation rules live in cache-core.
//!
//! **No value here embeds a user.** Hosts and participants are stored as
//! user ids ([`UserRef`]); their cards (name, image) are composed at answer
//! time from user-service's own cached reads, one `BatchGetUsers` per answer
//! (`grpc/`). So a profile update invalidates user-service's keys only, and
//! is held by user-service alone while it cannot apply that: a meeting
//! answer can never show a card older than an acknowledged profile update,
//! whichever service lost Redis (issue 19, finding 1).
//!
//! Meeting details are composed from separately cached parts — the row
//! (`meeting`) and the active-participant count (`meetingParticipantCount`)
//! — so a join or leave invalidates only the count and never costs a reload
//! of the row.

use cache_core::{Cache, CacheKey, Tag};
use chrono::{DateTime, Utc};
use huddle_db::Database;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    db::{self, HostStats, MeetingRow, ParticipantRow, Status},
    error::MeetingError,
    users::Users,
};

pub use self::user_ref::UserRef;

mod user_ref;

/// `GET /api/meetings/live`: the 20 newest.
pub const LIVE_PAGE: i64 = 20;
/// `GET /api/meetings/scheduled`: the 20 soonest.
pub const SCHEDULED_PAGE: i64 = 20;
/// `GET /api/users/{id}/meetings` and `/participations`: the 50 newest.
pub const USER_PAGE: i64 = 50;

/// What every read needs: the service's database, the cache, user-service.
#[derive(Clone)]
pub struct Sources {
    pub db: Database,
    pub cache: Cache,
    pub users: Users,
}

/// `meeting:{id}`: the row; its host's card is composed per answer. Counts
/// are cached separately.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedMeeting {
    pub meeting: MeetingRow,
    /// `meeting.host_id` again, under the name that held the card before:
    /// see [`UserRef`] for why old and new shapes must not decode as each
    /// other.
    pub host: UserRef,
}

/// `meeting:invite:{code}`: what a code shows before joining.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitePreview {
    pub id: Uuid,
    pub title: String,
    pub status: Status,
    pub scheduled_at: DateTime<Utc>,
    pub host: UserRef,
}

/// One entry of `meetings:live`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveItem {
    pub id: Uuid,
    pub title: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub host: UserRef,
    /// Active participants.
    pub participants: i64,
}

/// One entry of `meetings:scheduled`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduledItem {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub host: UserRef,
}

/// `meeting:{id}:participants`: every participant row, and the meeting's
/// host, so that this one value answers "does the meeting exist" and "may
/// the caller see it" for the participant routes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Participants {
    pub host_id: Uuid,
    pub items: Vec<ParticipantItem>,
    /// More rows follow the first page (only the first page is cached: a
    /// meeting's list is bounded by its distinct users, not by one value).
    #[serde(default)]
    pub more: bool,
}

/// One page of `GET …/participants`.
pub struct ParticipantsPage {
    pub items: Vec<ParticipantItem>,
    /// The last item's id when another page follows.
    pub next_after: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipantItem {
    pub participant: ParticipantRow,
    /// `participant.user_id` again (see [`CachedMeeting::host`]).
    pub user: UserRef,
}

impl From<ParticipantRow> for ParticipantItem {
    fn from(participant: ParticipantRow) -> Self {
        Self {
            user: UserRef(participant.user_id),
            participant,
        }
    }
}

/// One entry of `user:{id}:participations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipationItem {
    pub participant: ParticipantRow,
    pub meeting: ParticipationMeeting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipationMeeting {
    pub id: Uuid,
    pub title: String,
    pub status: Status,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub host: UserRef,
}

pub async fn meeting(src: &Sources, id: Uuid) -> Result<Option<CachedMeeting>, MeetingError> {
    let key = CacheKey::meeting(id);
    src.cache
        .get_or_load(&key, key.ttl(), &[], async || {
            let meeting = db::find_meeting(&mut *src.db.conn().await?, id).await?;
            Ok::<_, MeetingError>(meeting.map(|meeting| CachedMeeting {
                host: UserRef(meeting.host_id),
                meeting,
            }))
        })
        .await
}

/// `code` must be well-formed (checked before any Redis or Postgres call).
pub async fn meeting_by_invite_code(
    src: &Sources,
    code: &str,
) -> Result<Option<InvitePreview>, MeetingError> {
    let key = CacheKey::meeting_by_invite_code(code);
    src.cache
        .get_or_load(&key, key.ttl(), &[], async || {
            let meeting = db::find_by_invite_code(&mut *src.db.conn().await?, code).await?;
            Ok::<_, MeetingError>(meeting.map(|m| InvitePreview {
                host: UserRef(m.host_id),
                id: m.id,
                title: m.title,
                status: m.status,
                scheduled_at: m.scheduled_at,
            }))
        })
        .await
}

pub async fn active_participant_count(src: &Sources, id: Uuid) -> Result<i64, MeetingError> {
    let key = CacheKey::meeting_participant_count(id);
    let count = src
        .cache
        .get_or_load(&key, key.ttl(), &[], async || {
            Ok::<_, MeetingError>(Some(
                db::count_active(&mut *src.db.conn().await?, id).await?,
            ))
        })
        .await?;
    Ok(count.unwrap_or(0))
}

/// What one user is to one meeting, cached per (meeting, user) so an
/// access check never loads the participant list (issue 9 item 7).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    pub host_id: Uuid,
    /// Has a participant row, present or past.
    pub participated: bool,
    /// Has an active participant row.
    pub active: bool,
}

impl Membership {
    /// Host or participant (present or past) may read the meeting.
    pub fn admits(&self, user: Uuid) -> bool {
        self.host_id == user || self.participated
    }
}

/// `None` when the meeting does not exist. Invalidated by the user's join
/// and leave, by the meeting's end (everyone leaves) and, through the
/// meeting's tag, by its delete.
pub async fn membership(
    src: &Sources,
    id: Uuid,
    user: Uuid,
) -> Result<Option<Membership>, MeetingError> {
    let key = CacheKey::meeting_member(id, user);
    src.cache
        .get_or_load(&key, key.ttl(), &[Tag::meeting(id)], async || {
            let mut conn = src.db.conn().await?;
            let Some(meeting) = db::find_meeting(&mut conn, id).await? else {
                return Ok::<_, MeetingError>(None);
            };
            let last = db::last_participation(&mut conn, id, user).await?;
            Ok(Some(Membership {
                host_id: meeting.host_id,
                participated: last.is_some(),
                active: last.is_some_and(|p| p.left_at.is_none()),
            }))
        })
        .await
}

/// The default page of `GET …/participants`, the one that is cached.
pub const PARTICIPANTS_PAGE: usize = 50;
/// The largest page a caller may ask for.
pub const MAX_PARTICIPANTS_PAGE: usize = 100;

/// A page of participants, oldest join first. The first page of up to
/// `PARTICIPANTS_PAGE` comes from the cached value; later pages and larger
/// ones are read from Postgres (paging deep into a huge meeting is rare,
/// and caching every page would cache the unbounded list piecewise).
/// `None`: no such meeting, or `after` is not one of its participants.
pub async fn participants_page(
    src: &Sources,
    id: Uuid,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Option<ParticipantsPage>, MeetingError> {
    if after.is_none() && limit <= PARTICIPANTS_PAGE {
        let Some(first) = participants(src, id).await? else {
            return Ok(None);
        };
        let more = first.more || first.items.len() > limit;
        let items: Vec<ParticipantItem> = first.items.into_iter().take(limit).collect();
        return Ok(Some(page(items, more)));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let Some(mut rows) =
        db::participants_page(&mut *src.db.conn().await?, id, after, limit + 1).await?
    else {
        return Ok(None);
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let items = rows.into_iter().map(ParticipantItem::from).collect();
    Ok(Some(page(items, more)))
}

fn page(items: Vec<ParticipantItem>, more: bool) -> ParticipantsPage {
    let next_after = more
        .then(|| items.last().map(|p| p.participant.id))
        .flatten();
    ParticipantsPage { items, next_after }
}

/// The meeting's first `PARTICIPANTS_PAGE` participant rows, oldest join
/// first; `None` when the meeting does not exist.
pub async fn participants(src: &Sources, id: Uuid) -> Result<Option<Participants>, MeetingError> {
    let key = CacheKey::meeting_participants(id);
    src.cache
        .get_or_load(&key, key.ttl(), &[], async || {
            let mut conn = src.db.conn().await?;
            let Some(meeting) = db::find_meeting(&mut conn, id).await? else {
                return Ok::<_, MeetingError>(None);
            };
            let page = i64::try_from(PARTICIPANTS_PAGE + 1).unwrap_or(i64::MAX);
            let rows = db::participants_page(&mut conn, id, None, page)
                .await?
                .unwrap_or_default();
            Ok(Some(Participants {
                host_id: meeting.host_id,
                more: rows.len() > PARTICIPANTS_PAGE,
                items: rows
                    .into_iter()
                    .take(PARTICIPANTS_PAGE)
                    .map(ParticipantItem::from)
                    .collect(),
            }))
        })
        .await
}

pub async fn live_meetings(src: &Sources) -> Result<Vec<LiveItem>, MeetingError> {
    let key = CacheKey::live_meetings();
    let items = src
        .cache
        .get_or_load(&key, key.ttl(), &[], async || {
            let mut conn = src.db.conn().await?;
            let rows = db::live_meetings(&mut conn, LIVE_PAGE).await?;
            let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
            let counts = db::count_active_many(&mut conn, &ids).await?;
            Ok::<_, MeetingError>(Some(
                rows.into_iter()
                    .map(|m| LiveItem {
                        host: UserRef(m.host_id),
                        participants: counts.get(&m.id).copied().unwrap_or(0),
                        id: m.id,
                        title: m.title,
                        scheduled_at: m.scheduled_at,
                        started_at: m.started_at,
                    })
                    .collect(),
            ))
        })
        .await?;
    Ok(items.unwrap_or_default())
}

pub async fn scheduled_meetings(src: &Sources) -> Result<Vec<ScheduledItem>, MeetingError> {
    let key = CacheKey::scheduled_meetings();
    let items = src
        .cache
        .get_or_load(&key, key.ttl(), &[], async || {
            let rows = db::scheduled_meetings(&mut *src.db.conn().await?, SCHEDULED_PAGE).await?;
            Ok::<_, MeetingError>(Some(
                rows.into_iter()
                    .map(|m| ScheduledItem {
                        host: UserRef(m.host_id),
                        id: m.id,
                        title: m.title,
                        description: m.description,
                        scheduled_at: m.scheduled_at,
                    })
                    .collect(),
            ))
        })
        .await?;
    Ok(items.unwrap_or_default())
}

/// Meetings `user` hosts, newest first.
pub async fn user_meetings(src: &Sources, user: Uuid) -> Result<Vec<MeetingRow>, MeetingError> {
    let key = CacheKey::user_meetings(user);
    let rows = src
        .cache
        .get_or_load(&key, key.ttl(), &[], async || {
            Ok::<_, MeetingError>(Some(
                db::hosted_meetings(&mut *src.db.conn().await?, user, USER_PAGE).await?,
            ))
        })
        .await?;
    Ok(rows.unwrap_or_default())
}

/// The meetings `user` joined, newest join first, each with its host's id.
pub async fn user_participations(
    src: &Sources,
    user: Uuid,
) -> Result<Vec<ParticipationItem>, MeetingError> {
    let key = CacheKey::user_participations(user);
    let items = src
        .cache
        .get_or_load(&key, key.ttl(), &[], async || {
            let rows = db::participations(&mut *src.db.conn().await?, user, USER_PAGE).await?;
            Ok::<_, MeetingError>(Some(
                rows.into_iter()
                    .map(|(participant, m)| ParticipationItem {
                        participant,
                        meeting: ParticipationMeeting {
                            host: UserRef(m.host_id),
                            id: m.id,
                            title: m.title,
                            status: m.status,
                            scheduled_at: m.scheduled_at,
                            started_at: m.started_at,
                            ended_at: m.ended_at,
                        },
                    })
                    .collect(),
            ))
        })
        .await?;
    Ok(items.unwrap_or_default())
}

pub async fn host_stats(src: &Sources, user: Uuid) -> Result<HostStats, MeetingError> {
    let key = CacheKey::user_meeting_count(user);
    let stats = src
        .cache
        .get_or_load(&key, key.ttl(), &[], async || {
            Ok::<_, MeetingError>(Some(
                db::host_stats(&mut *src.db.conn().await?, user).await?,
            ))
        })
        .await?;
    Ok(stats.unwrap_or_default())
}
