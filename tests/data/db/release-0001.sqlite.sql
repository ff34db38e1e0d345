-- The case database as the release before versioned migrations made it on SQLite
-- (sqlite3 .dump of one approved case).
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE audit_log (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	at DATETIME NOT NULL, 
	actor VARCHAR(64) NOT NULL, 
	action VARCHAR(64) NOT NULL, 
	target VARCHAR(128) NOT NULL, 
	detail JSON NOT NULL
);
INSERT INTO audit_log VALUES(1,'2026-12-03 03:08:44.997095','cli:fixture','user.add','user:analyst1','{"role": "analyst"}');
INSERT INTO audit_log VALUES(2,'2026-12-03 03:08:45.078843','analyst1','case.approve','case:CP-20261129-0001','{"case_id": 1, "feed_seq": 1}');
CREATE TABLE clean_frames (
	snapshot_key VARCHAR(80) NOT NULL, 
	frame_key VARCHAR(80) NOT NULL, 
	width INTEGER NOT NULL, 
	height INTEGER NOT NULL, 
	boxes JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (snapshot_key)
);
CREATE TABLE webhook_outbox (
	id INTEGER NOT NULL, 
	endpoint VARCHAR(64) NOT NULL, 
	event VARCHAR(32) NOT NULL, 
	case_id INTEGER NOT NULL, 
	case_no VARCHAR(32) NOT NULL, 
	feed_seq INTEGER NOT NULL, 
	idempotency_key VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	last_attempt_at DATETIME, 
	last_status INTEGER, 
	last_error TEXT, 
	delivered_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (idempotency_key)
);
INSERT INTO webhook_outbox VALUES(1,'city','case.approved',1,'CP-20261129-0001',1,'8330f70465a745c6bd5772871550aca6','2026-12-03 03:08:45.072634','pending',0,'2026-12-03 03:08:45.072634',NULL,NULL,NULL,NULL);
CREATE TABLE draft_cases (
	id INTEGER NOT NULL, 
	case_no VARCHAR(32) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	event_type VARCHAR(32) NOT NULL, 
	major VARCHAR(8) NOT NULL, 
	major_name VARCHAR(64) NOT NULL, 
	minor VARCHAR(8) NOT NULL, 
	minor_name VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	source_id VARCHAR(64) NOT NULL, 
	source_kind VARCHAR(16) NOT NULL, 
	source_ids JSON NOT NULL, 
	lat FLOAT, 
	lon FLOAT, 
	grid VARCHAR(15), 
	address VARCHAR(200), 
	first_seen FLOAT NOT NULL, 
	last_seen FLOAT NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	ended BOOLEAN NOT NULL, 
	confidence FLOAT NOT NULL, 
	bbox JSON NOT NULL, 
	label VARCHAR(64) NOT NULL, 
	zone VARCHAR(64), 
	trace JSON NOT NULL, 
	snapshot_key VARCHAR(80), 
	model_version VARCHAR(64) NOT NULL, 
	hits INTEGER NOT NULL, 
	samples INTEGER NOT NULL, 
	reviewer VARCHAR(64), 
	review_reason VARCHAR(16), 
	review_note TEXT, 
	reviewed_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (case_no)
);
INSERT INTO draft_cases VALUES(1,'CP-20261129-0001','approved','street_vending','05','街面秩序','01','无照经营游商','a stall','cam-1','fixed','["cam-1"]',NULL,NULL,NULL,NULL,1780000000.0,1780000060.0,'2026-11-29 03:00:00.000000','2026-12-03 03:08:45.057039',0,0.8000000000000000444,'[0, 0, 10, 10]','stall',NULL,'["seen"]',NULL,'m1',3,4,'analyst1',NULL,NULL,'2026-12-03 03:08:45.057039');
CREATE TABLE users (
	id INTEGER NOT NULL, 
	username VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	password_hash VARCHAR(200) NOT NULL, 
	disabled BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	created_by VARCHAR(80), 
	disabled_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (username)
);
INSERT INTO users VALUES(1,'analyst1','analyst','scrypt$32768$8$3$kGJyJUhg3nO5GapiH6CR6Q==$Wx6O5khOk4aYEFOA7rwhjLCCGmENVfLJrL5Eiee+9vM=',0,'2026-12-03 03:08:44.994251','cli:fixture',NULL);
CREATE TABLE api_tokens (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	created_by VARCHAR(80), 
	expires_at DATETIME, 
	revoked_at DATETIME, 
	revoked_by VARCHAR(80), 
	PRIMARY KEY (id), 
	UNIQUE (token_hash)
);
CREATE TABLE flights (
	id VARCHAR(32) NOT NULL, 
	owner VARCHAR(64) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	video_name VARCHAR(255) NOT NULL, 
	video_size BIGINT NOT NULL, 
	video_sha256 VARCHAR(64) NOT NULL, 
	srt_name VARCHAR(255), 
	srt_size BIGINT, 
	srt_sha256 VARCHAR(64), 
	lat FLOAT, 
	lon FLOAT, 
	site_grid VARCHAR(15), 
	codec VARCHAR(16), 
	width INTEGER, 
	height INTEGER, 
	fps FLOAT, 
	duration_s FLOAT, 
	progress FLOAT NOT NULL, 
	attempts INTEGER NOT NULL, 
	worker VARCHAR(128), 
	error TEXT, 
	warnings JSON NOT NULL, 
	result JSON NOT NULL, 
	case_ids JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	uploaded_at DATETIME, 
	started_at DATETIME, 
	finished_at DATETIME, 
	PRIMARY KEY (id)
);
CREATE TABLE case_evidence (
	id INTEGER NOT NULL, 
	case_id INTEGER NOT NULL, 
	event_id VARCHAR(128) NOT NULL, 
	source_id VARCHAR(64) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	"key" VARCHAR(80) NOT NULL, 
	ts FLOAT, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_case_evidence_event_kind UNIQUE (event_id, kind), 
	FOREIGN KEY(case_id) REFERENCES draft_cases (id)
);
CREATE TABLE feed_entries (
	seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	feed VARCHAR(16) NOT NULL, 
	at DATETIME NOT NULL, 
	case_id INTEGER, 
	event_id VARCHAR(128), 
	revision INTEGER, 
	payload JSON NOT NULL, 
	FOREIGN KEY(case_id) REFERENCES draft_cases (id)
);
INSERT INTO feed_entries VALUES(1,'cases','2026-12-03 03:08:45.069962',1,NULL,NULL,'{}');
CREATE TABLE case_events (
	event_id VARCHAR(128) NOT NULL, 
	case_id INTEGER NOT NULL, 
	revision INTEGER NOT NULL, 
	source_id VARCHAR(64) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	start FLOAT NOT NULL, 
	last_seen FLOAT NOT NULL, 
	"end" FLOAT, 
	confidence FLOAT NOT NULL, 
	hits INTEGER NOT NULL, 
	samples INTEGER NOT NULL, 
	trace JSON NOT NULL, 
	joined VARCHAR(200), 
	PRIMARY KEY (event_id), 
	FOREIGN KEY(case_id) REFERENCES draft_cases (id)
);
INSERT INTO case_events VALUES('cam-1:1',1,1,'cam-1','opened',1780000000.0,1780000060.0,NULL,0.8000000000000000444,3,4,'["seen"]',NULL);
CREATE TABLE review_actions (
	id INTEGER NOT NULL, 
	case_id INTEGER NOT NULL, 
	action VARCHAR(16) NOT NULL, 
	actor VARCHAR(64) NOT NULL, 
	at DATETIME NOT NULL, 
	details JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(case_id) REFERENCES draft_cases (id)
);
INSERT INTO review_actions VALUES(1,1,'approve','analyst1','2026-12-03 03:08:45.057039','{}');
CREATE TABLE login_sessions (
	id INTEGER NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (token_hash), 
	FOREIGN KEY(user_id) REFERENCES users (id)
);
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('audit_log',2);
INSERT INTO sqlite_sequence VALUES('feed_entries',1);
CREATE INDEX ix_audit_log_target ON audit_log (target);
CREATE INDEX ix_audit_log_actor ON audit_log (actor);
CREATE INDEX ix_audit_log_at ON audit_log (at);
CREATE INDEX ix_webhook_outbox_due ON webhook_outbox (state, next_attempt_at);
CREATE INDEX ix_webhook_outbox_case_id ON webhook_outbox (case_id);
CREATE INDEX ix_webhook_outbox_endpoint ON webhook_outbox (endpoint);
CREATE INDEX ix_draft_cases_status ON draft_cases (status);
CREATE INDEX ix_draft_cases_grid ON draft_cases (grid);
CREATE INDEX ix_draft_cases_updated_at ON draft_cases (updated_at);
CREATE INDEX ix_draft_cases_type_last_seen ON draft_cases (event_type, last_seen);
CREATE INDEX ix_draft_cases_created_at ON draft_cases (created_at);
CREATE INDEX ix_draft_cases_source_id ON draft_cases (source_id);
CREATE INDEX ix_flights_owner ON flights (owner);
CREATE INDEX ix_flights_state ON flights (state);
CREATE INDEX ix_flights_created_at ON flights (created_at);
CREATE INDEX ix_case_evidence_case_id ON case_evidence (case_id);
CREATE INDEX ix_feed_entries_case_id ON feed_entries (case_id);
CREATE INDEX ix_feed_entries_feed_seq ON feed_entries (feed, seq);
CREATE INDEX ix_case_events_source_id ON case_events (source_id);
CREATE INDEX ix_case_events_case_id ON case_events (case_id);
CREATE INDEX ix_review_actions_case_id ON review_actions (case_id);
CREATE INDEX ix_login_sessions_expires_at ON login_sessions (expires_at);
CREATE INDEX ix_login_sessions_user_id ON login_sessions (user_id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER feed_entries_no_update BEFORE UPDATE ON feed_entries BEGIN SELECT RAISE(ABORT, 'feed_entries is append-only'); END;
CREATE TRIGGER feed_entries_no_delete BEFORE DELETE ON feed_entries BEGIN SELECT RAISE(ABORT, 'feed_entries is append-only'); END;
COMMIT;
