CREATE TABLE users (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    email text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    image text CHECK (image IS NULL OR char_length(image) <= 2048),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Emails are unique regardless of case (SPEC §2); lookups use lower(email).
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
