DROP TABLE participants;
DROP TABLE meetings;
