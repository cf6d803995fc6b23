//! The one path for changing an existing meeting — update, start and end —
//! under the meeting's row lock: check the caller is the host, check the
//! status moves one step forward, write, record the invalidation.

use cache_core::Invalidation;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use huddle_db::DbError;
use huddle_domain::{id, meeting};
use huddle_proto::meeting::v1 as pb;
use huddle_serve::Outbox;
use uuid::Uuid;

use super::{CODE_ATTEMPTS, MeetingApi, convert::meeting_pb, not_host};
use crate::{
    db::{self, MeetingChanges, MeetingRow, Status},
    error::MeetingError,
    invite, validate,
};

/// A change to an existing meeting, by its host.
#[derive(Debug, Default)]
pub(super) struct Edit {
    fields: MeetingChanges,
    rotate_invite_code: bool,
    /// Target status; anything but one step forward is a conflict.
    status: Option<Status>,
    /// The current status as target is a conflict too (start, end) rather
    /// than a no-op (PATCH, which may restate it).
    transition_required: bool,
}

struct Applied {
    row: MeetingRow,
    invalidation: Invalidation,
}

impl Edit {
    /// A PATCH: every field checked by the shared rules.
    fn from_update(req: &pb::UpdateMeetingRequest) -> Result<Self, MeetingError> {
        let description = if req.clear_description {
            Some(None)
        } else {
            req.description
                .as_deref()
                .map(meeting::description)
                .transpose()?
        };
        let edit = Self {
            fields: MeetingChanges {
                title: req.title.as_deref().map(meeting::title).transpose()?,
                description,
                scheduled_at: req
                    .scheduled_at
                    .as_ref()
                    .map(validate::scheduled_at)
                    .transpose()?,
                invite_code: None,
            },
            rotate_invite_code: req.rotate_invite_code,
            status: validate::status(req.status)?,
            transition_required: false,
        };
        if edit.is_empty() {
            return Err(MeetingError::InvalidArgument(
                "nothing to update".to_owned(),
            ));
        }
        Ok(edit)
    }

    /// Start or end: exactly one step to `target`.
    fn transition(target: Status) -> Self {
        Self {
            status: Some(target),
            transition_required: true,
            ..Self::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty() && !self.rotate_invite_code && self.status.is_none()
    }

    /// The status this edit moves `before` to, if any; a refused move is a
    /// conflict naming both.
    fn target_status(&self, before: &MeetingRow) -> Result<Option<Status>, MeetingError> {
        if self.fields.scheduled_at.is_some() && before.status != Status::Scheduled {
            return Err(MeetingError::Conflict(format!(
                "meeting is {}; only a SCHEDULED meeting can be rescheduled",
                before.status
            )));
        }
        let status = self
            .status
            .filter(|s| *s != before.status || self.transition_required);
        match status {
            Some(target) if before.status.next() != Some(target) => Err(MeetingError::Conflict(
                transition_refused(before.status, target),
            )),
            _ => Ok(status),
        }
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        before: &MeetingRow,
    ) -> Result<Applied, MeetingError> {
        let status = self.target_status(before)?;
        let mut fields = self.fields.clone();
        if self.rotate_invite_code {
            fields.invite_code = Some(invite::generate());
        }
        let mut row = if fields.is_empty() {
            before.clone()
        } else {
            db::update_fields(conn, before.id, &fields).await?
        };
        let mut moved = Vec::new();
        if let Some(target) = status {
            row = db::set_status(conn, before.id, target).await?;
            moved = move_participants(conn, &row, target).await?;
        }

        let codes: Vec<&str> = if row.invite_code == before.invite_code {
            vec![before.invite_code.as_str()]
        } else {
            vec![before.invite_code.as_str(), row.invite_code.as_str()]
        };
        let participants = db::participant_user_ids(conn, row.id).await?;
        let mut invalidation = Invalidation::meeting_update(
            row.id,
            row.host_id,
            &codes,
            status.is_some(),
            &participants,
        );
        for user in moved {
            invalidation = invalidation.merge(Invalidation::participant_join_leave(row.id, user));
        }
        Ok(Applied { row, invalidation })
    }
}

/// What a status change does to participants: the host joins when the
/// meeting goes LIVE, everyone leaves when it ends. Returns the users whose
/// rows changed.
async fn move_participants(
    conn: &mut AsyncPgConnection,
    row: &MeetingRow,
    target: Status,
) -> Result<Vec<Uuid>, MeetingError> {
    match target {
        Status::Live => {
            if db::find_active_participant(conn, row.id, row.host_id)
                .await?
                .is_some()
            {
                return Ok(Vec::new());
            }
            db::insert_participant(conn, Uuid::new_v4(), row.id, row.host_id).await?;
            Ok(vec![row.host_id])
        }
        Status::Ended => Ok(db::leave_all(conn, row.id).await?),
        Status::Scheduled => Ok(Vec::new()),
    }
}

fn transition_refused(current: Status, target: Status) -> String {
    let verb = match target {
        Status::Live => "started",
        Status::Ended => "ended",
        Status::Scheduled => "made SCHEDULED again",
    };
    let needed = match target {
        Status::Live => "only a SCHEDULED meeting can be started",
        Status::Ended => "only a LIVE meeting can be ended",
        Status::Scheduled => "status only moves forward",
    };
    format!("meeting is {current} and cannot be {verb}: {needed}")
}

impl MeetingApi {
    pub(super) async fn update(
        &self,
        req: &pb::UpdateMeetingRequest,
    ) -> Result<pb::Meeting, MeetingError> {
        let caller = id::parse("callerId", &req.caller_id)?;
        let id = id::parse("id", &req.id)?;
        let edit = Edit::from_update(req)?;
        let row = self.edit_meeting(id, caller, &edit).await?;
        Ok(meeting_pb(&row, caller))
    }

    pub(super) async fn change_status(
        &self,
        req: &pb::MeetingActionRequest,
        target: Status,
    ) -> Result<pb::Meeting, MeetingError> {
        let caller = id::parse("callerId", &req.caller_id)?;
        let id = id::parse("id", &req.id)?;
        let row = self
            .edit_meeting(id, caller, &Edit::transition(target))
            .await?;
        Ok(meeting_pb(&row, caller))
    }

    /// Runs `edit` on the host's locked meeting row, then records what it
    /// changed; a rotated code that collides is retried with a fresh one.
    async fn edit_meeting(
        &self,
        id: Uuid,
        caller: Uuid,
        edit: &Edit,
    ) -> Result<MeetingRow, MeetingError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut conn = self.src.db.conn().await?;
            let result = conn
                .transaction::<_, MeetingError, _>(async |conn| {
                    let before = db::lock_meeting(conn, id)
                        .await?
                        .ok_or(MeetingError::NotFound)?;
                    if before.host_id != caller {
                        let denied = "only the host may change this meeting";
                        return Err(not_host(conn, id, caller, denied).await?);
                    }
                    let applied = edit.apply(conn, &before).await?;
                    let recorded = Outbox::record(conn, applied.invalidation).await?;
                    Ok((applied.row, recorded))
                })
                .await;
            drop(conn);
            match result {
                Err(MeetingError::Db(DbError::Unique { constraint }))
                    if constraint == db::INVITE_CODE_CONSTRAINT && attempts < CODE_ATTEMPTS => {}
                Err(e) => return Err(e),
                Ok((row, recorded)) => {
                    self.outbox.after_commit(Some(recorded)).await?;
                    return Ok(row);
                }
            }
        }
    }
}
