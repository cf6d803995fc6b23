-- One row per LiveKit egress (SPEC §2): a meeting may be recorded more
-- than once. Status only moves forward (PROCESSING -> READY | FAILED); the
-- webhook handler enforces it under the row lock.
CREATE TABLE recordings (
    id uuid PRIMARY KEY,
    meeting_id uuid NOT NULL,
    egress_id text NOT NULL UNIQUE CHECK (char_length(egress_id) BETWEEN 1 AND 200),
    status text NOT NULL CHECK (status IN ('PROCESSING', 'READY', 'FAILED')),
    file_url text CHECK (file_url IS NULL OR char_length(file_url) <= 4096),
    duration_seconds bigint CHECK (duration_seconds IS NULL OR duration_seconds >= 0),
    file_size_bytes bigint CHECK (file_size_bytes IS NULL OR file_size_bytes >= 0),
    error text CHECK (error IS NULL OR char_length(error) <= 4096),
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The reads: a meeting's recordings, newest first.
CREATE INDEX recordings_meeting_newest ON recordings (meeting_id, started_at DESC, id DESC);

-- Meetings whose delete already cascaded here: a webhook that arrives later
-- (LiveKit retries for a while) must not create a row nobody can delete.
CREATE TABLE deleted_meetings (
    meeting_id uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
