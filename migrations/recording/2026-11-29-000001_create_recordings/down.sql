DROP TABLE deleted_meetings;
DROP TABLE recordings;
