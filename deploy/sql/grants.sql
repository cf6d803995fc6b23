-- The runtime role's rights in one service database: read and write rows,
-- nothing else. Run once per service database, connected to it as the
-- migration role (which owns it and what the migrations create), after the
-- first `huddle migrate` (deploy/README.md, "Secrets"):
--
--   for db in huddle_user huddle_meeting huddle_chat huddle_recording; do
--     psql "postgres://huddle_migrate:…@db.internal:5432/$db?sslmode=verify-full" \
--       -v ON_ERROR_STOP=1 -f deploy/sql/grants.sql
--   done
SELECT format('GRANT CONNECT ON DATABASE %I TO huddle_app', current_database()) \gexec
GRANT USAGE ON SCHEMA public TO huddle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO huddle_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO huddle_app;
-- Tables and sequences later migrations create.
ALTER DEFAULT PRIVILEGES FOR ROLE huddle_migrate IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO huddle_app;
ALTER DEFAULT PRIVILEGES FOR ROLE huddle_migrate IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO huddle_app;
