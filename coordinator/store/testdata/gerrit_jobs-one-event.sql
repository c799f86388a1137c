-- gerrit_jobs as it was when a job served one event, with one row.
CREATE TABLE gerrit_jobs (
	job_id     TEXT PRIMARY KEY,
	event_id   INTEGER NOT NULL,
	server     TEXT NOT NULL,
	kind       TEXT NOT NULL,
	change_num INTEGER NOT NULL DEFAULT 0,
	patch_set  INTEGER NOT NULL DEFAULT 0,
	revision   TEXT NOT NULL DEFAULT '',
	release    TEXT NOT NULL,
	target     TEXT NOT NULL,
	package    TEXT NOT NULL,
	state      TEXT NOT NULL DEFAULT '',
	log_url    TEXT NOT NULL DEFAULT '',
	published  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX gerrit_jobs_event ON gerrit_jobs (event_id);
INSERT INTO gerrit_jobs (job_id, event_id, server, kind, change_num, patch_set, release, target, package, state)
	VALUES ('7', 100, 'review', 'review', 31, 1, 'mos-9.0', 'trusty-amd64', 'nginx', 'succeeded');
