DROP TABLE meeting_deletions;
