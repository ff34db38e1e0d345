-- The case database as the release before versioned migrations made it on PostgreSQL
-- (pg_dump --inserts of one approved case, schema prefix removed): replayed into a fresh schema.
CREATE FUNCTION audit_log_refuse() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE FUNCTION feed_entries_refuse() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'feed_entries is append-only'; END $$;
CREATE TABLE api_tokens (
    id integer NOT NULL,
    name character varying(64) NOT NULL,
    role character varying(16) NOT NULL,
    token_hash character varying(64) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    created_by character varying(80),
    expires_at timestamp with time zone,
    revoked_at timestamp with time zone,
    revoked_by character varying(80)
);
CREATE SEQUENCE api_tokens_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE api_tokens_id_seq OWNED BY api_tokens.id;
CREATE TABLE audit_log (
    id integer NOT NULL,
    at timestamp with time zone NOT NULL,
    actor character varying(64) NOT NULL,
    action character varying(64) NOT NULL,
    target character varying(128) NOT NULL,
    detail json NOT NULL
);
CREATE SEQUENCE audit_log_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
CREATE TABLE case_events (
    event_id character varying(128) NOT NULL,
    case_id integer NOT NULL,
    revision integer NOT NULL,
    source_id character varying(64) NOT NULL,
    state character varying(16) NOT NULL,
    start double precision NOT NULL,
    last_seen double precision NOT NULL,
    "end" double precision,
    confidence double precision NOT NULL,
    hits integer NOT NULL,
    samples integer NOT NULL,
    trace json NOT NULL,
    joined character varying(200)
);
CREATE TABLE case_evidence (
    id integer NOT NULL,
    case_id integer NOT NULL,
    event_id character varying(128) NOT NULL,
    source_id character varying(64) NOT NULL,
    kind character varying(16) NOT NULL,
    key character varying(80) NOT NULL,
    ts double precision,
    updated_at timestamp with time zone NOT NULL
);
CREATE SEQUENCE case_evidence_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE case_evidence_id_seq OWNED BY case_evidence.id;
CREATE TABLE clean_frames (
    snapshot_key character varying(80) NOT NULL,
    frame_key character varying(80) NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    boxes json NOT NULL,
    created_at timestamp with time zone NOT NULL
);
CREATE TABLE draft_cases (
    id integer NOT NULL,
    case_no character varying(32) NOT NULL,
    status character varying(16) NOT NULL,
    event_type character varying(32) NOT NULL,
    major character varying(8) NOT NULL,
    major_name character varying(64) NOT NULL,
    minor character varying(8) NOT NULL,
    minor_name character varying(64) NOT NULL,
    description text NOT NULL,
    source_id character varying(64) NOT NULL,
    source_kind character varying(16) NOT NULL,
    source_ids json NOT NULL,
    lat double precision,
    lon double precision,
    grid character varying(15),
    address character varying(200),
    first_seen double precision NOT NULL,
    last_seen double precision NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    ended boolean NOT NULL,
    confidence double precision NOT NULL,
    bbox json NOT NULL,
    label character varying(64) NOT NULL,
    zone character varying(64),
    trace json NOT NULL,
    snapshot_key character varying(80),
    model_version character varying(64) NOT NULL,
    hits integer NOT NULL,
    samples integer NOT NULL,
    reviewer character varying(64),
    review_reason character varying(16),
    review_note text,
    reviewed_at timestamp with time zone
);
CREATE SEQUENCE draft_cases_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE draft_cases_id_seq OWNED BY draft_cases.id;
CREATE TABLE feed_entries (
    seq integer NOT NULL,
    feed character varying(16) NOT NULL,
    at timestamp with time zone NOT NULL,
    case_id integer,
    event_id character varying(128),
    revision integer,
    payload json NOT NULL
);
CREATE SEQUENCE feed_entries_seq_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE feed_entries_seq_seq OWNED BY feed_entries.seq;
CREATE TABLE flights (
    id character varying(32) NOT NULL,
    owner character varying(64) NOT NULL,
    state character varying(16) NOT NULL,
    kind character varying(16) NOT NULL,
    video_name character varying(255) NOT NULL,
    video_size bigint NOT NULL,
    video_sha256 character varying(64) NOT NULL,
    srt_name character varying(255),
    srt_size bigint,
    srt_sha256 character varying(64),
    lat double precision,
    lon double precision,
    site_grid character varying(15),
    codec character varying(16),
    width integer,
    height integer,
    fps double precision,
    duration_s double precision,
    progress double precision NOT NULL,
    attempts integer NOT NULL,
    worker character varying(128),
    error text,
    warnings json NOT NULL,
    result json NOT NULL,
    case_ids json NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    uploaded_at timestamp with time zone,
    started_at timestamp with time zone,
    finished_at timestamp with time zone
);
CREATE TABLE login_sessions (
    id integer NOT NULL,
    token_hash character varying(64) NOT NULL,
    user_id integer NOT NULL,
    created_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    ended_at timestamp with time zone
);
CREATE SEQUENCE login_sessions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE login_sessions_id_seq OWNED BY login_sessions.id;
CREATE TABLE review_actions (
    id integer NOT NULL,
    case_id integer NOT NULL,
    action character varying(16) NOT NULL,
    actor character varying(64) NOT NULL,
    at timestamp with time zone NOT NULL,
    details json NOT NULL
);
CREATE SEQUENCE review_actions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE review_actions_id_seq OWNED BY review_actions.id;
CREATE TABLE users (
    id integer NOT NULL,
    username character varying(64) NOT NULL,
    role character varying(16) NOT NULL,
    password_hash character varying(200) NOT NULL,
    disabled boolean NOT NULL,
    created_at timestamp with time zone NOT NULL,
    created_by character varying(80),
    disabled_at timestamp with time zone
);
CREATE SEQUENCE users_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE users_id_seq OWNED BY users.id;
CREATE TABLE webhook_outbox (
    id integer NOT NULL,
    endpoint character varying(64) NOT NULL,
    event character varying(32) NOT NULL,
    case_id integer NOT NULL,
    case_no character varying(32) NOT NULL,
    feed_seq integer NOT NULL,
    idempotency_key character varying(64) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    state character varying(16) NOT NULL,
    attempts integer NOT NULL,
    next_attempt_at timestamp with time zone NOT NULL,
    last_attempt_at timestamp with time zone,
    last_status integer,
    last_error text,
    delivered_at timestamp with time zone
);
CREATE SEQUENCE webhook_outbox_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE webhook_outbox_id_seq OWNED BY webhook_outbox.id;
ALTER TABLE ONLY api_tokens ALTER COLUMN id SET DEFAULT nextval('api_tokens_id_seq'::regclass);
ALTER TABLE ONLY audit_log ALTER COLUMN id SET DEFAULT nextval('audit_log_id_seq'::regclass);
ALTER TABLE ONLY case_evidence ALTER COLUMN id SET DEFAULT nextval('case_evidence_id_seq'::regclass);
ALTER TABLE ONLY draft_cases ALTER COLUMN id SET DEFAULT nextval('draft_cases_id_seq'::regclass);
ALTER TABLE ONLY feed_entries ALTER COLUMN seq SET DEFAULT nextval('feed_entries_seq_seq'::regclass);
ALTER TABLE ONLY login_sessions ALTER COLUMN id SET DEFAULT nextval('login_sessions_id_seq'::regclass);
ALTER TABLE ONLY review_actions ALTER COLUMN id SET DEFAULT nextval('review_actions_id_seq'::regclass);
ALTER TABLE ONLY users ALTER COLUMN id SET DEFAULT nextval('users_id_seq'::regclass);
ALTER TABLE ONLY webhook_outbox ALTER COLUMN id SET DEFAULT nextval('webhook_outbox_id_seq'::regclass);
INSERT INTO audit_log VALUES (1, '2026-12-03 03:08:49.433497+00', 'cli:fixture', 'user.add', 'user:analyst1', '{"role": "analyst"}');
INSERT INTO audit_log VALUES (2, '2026-12-03 03:08:49.483681+00', 'analyst1', 'case.approve', 'case:CP-20261129-0001', '{"case_id": 1, "feed_seq": 1}');
INSERT INTO case_events VALUES ('cam-1:1', 1, 1, 'cam-1', 'opened', 1780000000, 1780000060, NULL, 0.8, 3, 4, '["seen"]', NULL);
INSERT INTO draft_cases VALUES (1, 'CP-20261129-0001', 'approved', 'street_vending', '05', '街面秩序', '01', '无照经营游商', 'a stall', 'cam-1', 'fixed', '["cam-1"]', NULL, NULL, NULL, NULL, 1780000000, 1780000060, '2026-11-29 03:00:00+00', '2026-12-03 03:08:49.46756+00', false, 0.8, '[0, 0, 10, 10]', 'stall', NULL, '["seen"]', NULL, 'm1', 3, 4, 'analyst1', NULL, NULL, '2026-12-03 03:08:49.46756+00');
INSERT INTO feed_entries VALUES (1, 'cases', '2026-12-03 03:08:49.47725+00', 1, NULL, NULL, '{}');
INSERT INTO review_actions VALUES (1, 1, 'approve', 'analyst1', '2026-12-03 03:08:49.46756+00', '{}');
INSERT INTO users VALUES (1, 'analyst1', 'analyst', 'scrypt$32768$8$3$+yEm+hKjVCxOSJBOR2iLjA==$sX+9ZNYmwhjdIjRz+6JqXNudScr858LLoKzZwkYjDG0=', false, '2026-12-03 03:08:49.431045+00', 'cli:fixture', NULL);
INSERT INTO webhook_outbox VALUES (1, 'city', 'case.approved', 1, 'CP-20261129-0001', 1, '41aed14611bc4555b5a849613a4bdd14', '2026-12-03 03:08:49.479174+00', 'pending', 0, '2026-12-03 03:08:49.479174+00', NULL, NULL, NULL, NULL);
SELECT pg_catalog.setval('api_tokens_id_seq', 1, false);
SELECT pg_catalog.setval('audit_log_id_seq', 2, true);
SELECT pg_catalog.setval('case_evidence_id_seq', 1, false);
SELECT pg_catalog.setval('draft_cases_id_seq', 1, true);
SELECT pg_catalog.setval('feed_entries_seq_seq', 1, true);
SELECT pg_catalog.setval('login_sessions_id_seq', 1, false);
SELECT pg_catalog.setval('review_actions_id_seq', 1, true);
SELECT pg_catalog.setval('users_id_seq', 1, true);
SELECT pg_catalog.setval('webhook_outbox_id_seq', 1, true);
ALTER TABLE ONLY api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (id);
ALTER TABLE ONLY api_tokens
    ADD CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash);
ALTER TABLE ONLY audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);
ALTER TABLE ONLY case_events
    ADD CONSTRAINT case_events_pkey PRIMARY KEY (event_id);
ALTER TABLE ONLY case_evidence
    ADD CONSTRAINT case_evidence_pkey PRIMARY KEY (id);
ALTER TABLE ONLY clean_frames
    ADD CONSTRAINT clean_frames_pkey PRIMARY KEY (snapshot_key);
ALTER TABLE ONLY draft_cases
    ADD CONSTRAINT draft_cases_case_no_key UNIQUE (case_no);
ALTER TABLE ONLY draft_cases
    ADD CONSTRAINT draft_cases_pkey PRIMARY KEY (id);
ALTER TABLE ONLY feed_entries
    ADD CONSTRAINT feed_entries_pkey PRIMARY KEY (seq);
ALTER TABLE ONLY flights
    ADD CONSTRAINT flights_pkey PRIMARY KEY (id);
ALTER TABLE ONLY login_sessions
    ADD CONSTRAINT login_sessions_pkey PRIMARY KEY (id);
ALTER TABLE ONLY login_sessions
    ADD CONSTRAINT login_sessions_token_hash_key UNIQUE (token_hash);
ALTER TABLE ONLY review_actions
    ADD CONSTRAINT review_actions_pkey PRIMARY KEY (id);
ALTER TABLE ONLY case_evidence
    ADD CONSTRAINT uq_case_evidence_event_kind UNIQUE (event_id, kind);
ALTER TABLE ONLY users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);
ALTER TABLE ONLY users
    ADD CONSTRAINT users_username_key UNIQUE (username);
ALTER TABLE ONLY webhook_outbox
    ADD CONSTRAINT webhook_outbox_idempotency_key_key UNIQUE (idempotency_key);
ALTER TABLE ONLY webhook_outbox
    ADD CONSTRAINT webhook_outbox_pkey PRIMARY KEY (id);
CREATE INDEX ix_audit_log_actor ON audit_log USING btree (actor);
CREATE INDEX ix_audit_log_at ON audit_log USING btree (at);
CREATE INDEX ix_audit_log_target ON audit_log USING btree (target);
CREATE INDEX ix_case_events_case_id ON case_events USING btree (case_id);
CREATE INDEX ix_case_events_source_id ON case_events USING btree (source_id);
CREATE INDEX ix_case_evidence_case_id ON case_evidence USING btree (case_id);
CREATE INDEX ix_draft_cases_created_at ON draft_cases USING btree (created_at);
CREATE INDEX ix_draft_cases_grid ON draft_cases USING btree (grid);
CREATE INDEX ix_draft_cases_source_id ON draft_cases USING btree (source_id);
CREATE INDEX ix_draft_cases_status ON draft_cases USING btree (status);
CREATE INDEX ix_draft_cases_type_last_seen ON draft_cases USING btree (event_type, last_seen);
CREATE INDEX ix_draft_cases_updated_at ON draft_cases USING btree (updated_at);
CREATE INDEX ix_feed_entries_case_id ON feed_entries USING btree (case_id);
CREATE INDEX ix_feed_entries_feed_seq ON feed_entries USING btree (feed, seq);
CREATE INDEX ix_flights_created_at ON flights USING btree (created_at);
CREATE INDEX ix_flights_owner ON flights USING btree (owner);
CREATE INDEX ix_flights_state ON flights USING btree (state);
CREATE INDEX ix_login_sessions_expires_at ON login_sessions USING btree (expires_at);
CREATE INDEX ix_login_sessions_user_id ON login_sessions USING btree (user_id);
CREATE INDEX ix_review_actions_case_id ON review_actions USING btree (case_id);
CREATE INDEX ix_webhook_outbox_case_id ON webhook_outbox USING btree (case_id);
CREATE INDEX ix_webhook_outbox_due ON webhook_outbox USING btree (state, next_attempt_at);
CREATE INDEX ix_webhook_outbox_endpoint ON webhook_outbox USING btree (endpoint);
CREATE TRIGGER audit_log_no_change BEFORE DELETE OR UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER feed_entries_no_change BEFORE DELETE OR UPDATE ON feed_entries FOR EACH ROW EXECUTE FUNCTION feed_entries_refuse();
CREATE TRIGGER feed_entries_no_truncate BEFORE TRUNCATE ON feed_entries FOR EACH STATEMENT EXECUTE FUNCTION feed_entries_refuse();
ALTER TABLE ONLY case_events
    ADD CONSTRAINT case_events_case_id_fkey FOREIGN KEY (case_id) REFERENCES draft_cases(id);
ALTER TABLE ONLY case_evidence
    ADD CONSTRAINT case_evidence_case_id_fkey FOREIGN KEY (case_id) REFERENCES draft_cases(id);
ALTER TABLE ONLY feed_entries
    ADD CONSTRAINT feed_entries_case_id_fkey FOREIGN KEY (case_id) REFERENCES draft_cases(id);
ALTER TABLE ONLY login_sessions
    ADD CONSTRAINT login_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id);
ALTER TABLE ONLY review_actions
    ADD CONSTRAINT review_actions_case_id_fkey FOREIGN KEY (case_id) REFERENCES draft_cases(id);
