CREATE TABLE meetings (
    id uuid PRIMARY KEY,
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description text CHECK (description IS NULL OR char_length(description) <= 2000),
    status text NOT NULL DEFAULT 'SCHEDULED' CHECK (status IN ('SCHEDULED', 'LIVE', 'ENDED')),
    -- A user of user-service (another database: no foreign key).
    host_id uuid NOT NULL,
    invite_code text NOT NULL UNIQUE CHECK (invite_code ~ '^[A-Za-z0-9_-]{12}$'),
    scheduled_at timestamptz NOT NULL,
    started_at timestamptz,
    ended_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Status only moves forward, and its timestamps say when it did.
    CHECK ((status = 'SCHEDULED') = (started_at IS NULL)),
    CHECK ((status = 'ENDED') = (ended_at IS NOT NULL))
);

-- userMeetings (newest first), userMeetingCount.
CREATE INDEX meetings_host_created_idx ON meetings (host_id, created_at DESC, id);
-- liveMeetings (newest start first).
CREATE INDEX meetings_live_idx ON meetings (started_at DESC, id) WHERE status = 'LIVE';
-- scheduledMeetings (soonest first).
CREATE INDEX meetings_scheduled_idx ON meetings (scheduled_at, id) WHERE status = 'SCHEDULED';

CREATE TABLE participants (
    id uuid PRIMARY KEY,
    meeting_id uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    left_at timestamptz,
    CHECK (left_at IS NULL OR left_at >= joined_at)
);

-- A user has at most one active row per meeting (SPEC §2).
CREATE UNIQUE INDEX participants_one_active_idx ON participants (meeting_id, user_id)
    WHERE left_at IS NULL;
-- meetingParticipants (oldest join first) and membership checks.
CREATE INDEX participants_meeting_idx ON participants (meeting_id, joined_at, id);
-- userParticipations (newest first).
CREATE INDEX participants_user_idx ON participants (user_id, joined_at DESC, id);
