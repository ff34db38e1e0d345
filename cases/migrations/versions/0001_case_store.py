"""The case database's first versioned schema: the case store and its logs, accounts and flights.

A database made before migrations existed may hold some of these tables already
(tables were created as their code was first used), so each is created only where it
is absent; with ``--sql`` there is nothing to look at and all are written.

Revision ID: 0001
Revises:
"""
from alembic import context, op
import sqlalchemy as sa
import cases.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_log", "feed_entries")


def upgrade() -> None:
    existing = set() if context.is_offline_mode() else set(sa.inspect(op.get_bind()).get_table_names())
    if "api_tokens" not in existing:
        op.create_table("api_tokens",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("created_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("created_by", sa.String(length=80), nullable=True),
            sa.Column("expires_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.Column("revoked_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.Column("revoked_by", sa.String(length=80), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("token_hash")
            )

    if "audit_log" not in existing:
        op.create_table("audit_log",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("actor", sa.String(length=64), nullable=False),
            sa.Column("action", sa.String(length=64), nullable=False),
            sa.Column("target", sa.String(length=128), nullable=False),
            sa.Column("detail", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sqlite_autoincrement=True
            )
        with op.batch_alter_table("audit_log", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_audit_log_actor"), ["actor"], unique=False)
            batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
            batch_op.create_index(batch_op.f("ix_audit_log_target"), ["target"], unique=False)

    if "clean_frames" not in existing:
        op.create_table("clean_frames",
            sa.Column("snapshot_key", sa.String(length=80), nullable=False),
            sa.Column("frame_key", sa.String(length=80), nullable=False),
            sa.Column("width", sa.Integer(), nullable=False),
            sa.Column("height", sa.Integer(), nullable=False),
            sa.Column("boxes", sa.JSON(), nullable=False),
            sa.Column("created_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("snapshot_key")
            )

    if "draft_cases" not in existing:
        op.create_table("draft_cases",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("case_no", sa.String(length=32), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("event_type", sa.String(length=32), nullable=False),
            sa.Column("major", sa.String(length=8), nullable=False),
            sa.Column("major_name", sa.String(length=64), nullable=False),
            sa.Column("minor", sa.String(length=8), nullable=False),
            sa.Column("minor_name", sa.String(length=64), nullable=False),
            sa.Column("description", sa.Text(), nullable=False),
            sa.Column("source_id", sa.String(length=64), nullable=False),
            sa.Column("source_kind", sa.String(length=16), nullable=False),
            sa.Column("source_ids", sa.JSON(), nullable=False),
            sa.Column("lat", sa.Float(), nullable=True),
            sa.Column("lon", sa.Float(), nullable=True),
            sa.Column("grid", sa.String(length=15), nullable=True),
            sa.Column("address", sa.String(length=200), nullable=True),
            sa.Column("first_seen", sa.Float(), nullable=False),
            sa.Column("last_seen", sa.Float(), nullable=False),
            sa.Column("created_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("updated_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("ended", sa.Boolean(), nullable=False),
            sa.Column("confidence", sa.Float(), nullable=False),
            sa.Column("bbox", sa.JSON(), nullable=False),
            sa.Column("label", sa.String(length=64), nullable=False),
            sa.Column("zone", sa.String(length=64), nullable=True),
            sa.Column("trace", sa.JSON(), nullable=False),
            sa.Column("snapshot_key", sa.String(length=80), nullable=True),
            sa.Column("model_version", sa.String(length=64), nullable=False),
            sa.Column("hits", sa.Integer(), nullable=False),
            sa.Column("samples", sa.Integer(), nullable=False),
            sa.Column("reviewer", sa.String(length=64), nullable=True),
            sa.Column("review_reason", sa.String(length=16), nullable=True),
            sa.Column("review_note", sa.Text(), nullable=True),
            sa.Column("reviewed_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("case_no")
            )
        with op.batch_alter_table("draft_cases", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_draft_cases_created_at"), ["created_at"], unique=False)
            batch_op.create_index(batch_op.f("ix_draft_cases_grid"), ["grid"], unique=False)
            batch_op.create_index(batch_op.f("ix_draft_cases_source_id"), ["source_id"], unique=False)
            batch_op.create_index(batch_op.f("ix_draft_cases_status"), ["status"], unique=False)
            batch_op.create_index("ix_draft_cases_type_last_seen", ["event_type", "last_seen"], unique=False)
            batch_op.create_index(batch_op.f("ix_draft_cases_updated_at"), ["updated_at"], unique=False)

    if "flights" not in existing:
        op.create_table("flights",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("owner", sa.String(length=64), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("video_name", sa.String(length=255), nullable=False),
            sa.Column("video_size", sa.BigInteger(), nullable=False),
            sa.Column("video_sha256", sa.String(length=64), nullable=False),
            sa.Column("srt_name", sa.String(length=255), nullable=True),
            sa.Column("srt_size", sa.BigInteger(), nullable=True),
            sa.Column("srt_sha256", sa.String(length=64), nullable=True),
            sa.Column("lat", sa.Float(), nullable=True),
            sa.Column("lon", sa.Float(), nullable=True),
            sa.Column("site_grid", sa.String(length=15), nullable=True),
            sa.Column("codec", sa.String(length=16), nullable=True),
            sa.Column("width", sa.Integer(), nullable=True),
            sa.Column("height", sa.Integer(), nullable=True),
            sa.Column("fps", sa.Float(), nullable=True),
            sa.Column("duration_s", sa.Float(), nullable=True),
            sa.Column("progress", sa.Float(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("worker", sa.String(length=128), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("warnings", sa.JSON(), nullable=False),
            sa.Column("result", sa.JSON(), nullable=False),
            sa.Column("case_ids", sa.JSON(), nullable=False),
            sa.Column("created_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("updated_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("uploaded_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.Column("started_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.Column("finished_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id")
            )
        with op.batch_alter_table("flights", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_flights_created_at"), ["created_at"], unique=False)
            batch_op.create_index(batch_op.f("ix_flights_owner"), ["owner"], unique=False)
            batch_op.create_index(batch_op.f("ix_flights_state"), ["state"], unique=False)

    if "users" not in existing:
        op.create_table("users",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("username", sa.String(length=64), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.Column("password_hash", sa.String(length=200), nullable=False),
            sa.Column("disabled", sa.Boolean(), nullable=False),
            sa.Column("created_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("created_by", sa.String(length=80), nullable=True),
            sa.Column("disabled_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("username")
            )

    if "webhook_outbox" not in existing:
        op.create_table("webhook_outbox",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("endpoint", sa.String(length=64), nullable=False),
            sa.Column("event", sa.String(length=32), nullable=False),
            sa.Column("case_id", sa.Integer(), nullable=False),
            sa.Column("case_no", sa.String(length=32), nullable=False),
            sa.Column("feed_seq", sa.Integer(), nullable=False),
            sa.Column("idempotency_key", sa.String(length=64), nullable=False),
            sa.Column("created_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("last_attempt_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.Column("last_status", sa.Integer(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("delivered_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("idempotency_key")
            )
        with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_webhook_outbox_case_id"), ["case_id"], unique=False)
            batch_op.create_index("ix_webhook_outbox_due", ["state", "next_attempt_at"], unique=False)
            batch_op.create_index(batch_op.f("ix_webhook_outbox_endpoint"), ["endpoint"], unique=False)

    if "case_events" not in existing:
        op.create_table("case_events",
            sa.Column("event_id", sa.String(length=128), nullable=False),
            sa.Column("case_id", sa.Integer(), nullable=False),
            sa.Column("revision", sa.Integer(), nullable=False),
            sa.Column("source_id", sa.String(length=64), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("start", sa.Float(), nullable=False),
            sa.Column("last_seen", sa.Float(), nullable=False),
            sa.Column("end", sa.Float(), nullable=True),
            sa.Column("confidence", sa.Float(), nullable=False),
            sa.Column("hits", sa.Integer(), nullable=False),
            sa.Column("samples", sa.Integer(), nullable=False),
            sa.Column("trace", sa.JSON(), nullable=False),
            sa.Column("joined", sa.String(length=200), nullable=True),
            sa.ForeignKeyConstraint(["case_id"], ["draft_cases.id"], ),
            sa.PrimaryKeyConstraint("event_id")
            )
        with op.batch_alter_table("case_events", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_case_events_case_id"), ["case_id"], unique=False)
            batch_op.create_index(batch_op.f("ix_case_events_source_id"), ["source_id"], unique=False)

    if "case_evidence" not in existing:
        op.create_table("case_evidence",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("case_id", sa.Integer(), nullable=False),
            sa.Column("event_id", sa.String(length=128), nullable=False),
            sa.Column("source_id", sa.String(length=64), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("key", sa.String(length=80), nullable=False),
            sa.Column("ts", sa.Float(), nullable=True),
            sa.Column("updated_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["case_id"], ["draft_cases.id"], ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("event_id", "kind", name="uq_case_evidence_event_kind")
            )
        with op.batch_alter_table("case_evidence", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_case_evidence_case_id"), ["case_id"], unique=False)

    if "feed_entries" not in existing:
        op.create_table("feed_entries",
            sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("feed", sa.String(length=16), nullable=False),
            sa.Column("at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("case_id", sa.Integer(), nullable=True),
            sa.Column("event_id", sa.String(length=128), nullable=True),
            sa.Column("revision", sa.Integer(), nullable=True),
            sa.Column("payload", sa.JSON(), nullable=False),
            sa.ForeignKeyConstraint(["case_id"], ["draft_cases.id"], ),
            sa.PrimaryKeyConstraint("seq"),
            sqlite_autoincrement=True
            )
        with op.batch_alter_table("feed_entries", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_feed_entries_case_id"), ["case_id"], unique=False)
            batch_op.create_index("ix_feed_entries_feed_seq", ["feed", "seq"], unique=False)

    if "login_sessions" not in existing:
        op.create_table("login_sessions",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("user_id", sa.Integer(), nullable=False),
            sa.Column("created_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("expires_at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("ended_at", cases.db.UTCDateTime(timezone=True), nullable=True),
            sa.ForeignKeyConstraint(["user_id"], ["users.id"], ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("token_hash")
            )
        with op.batch_alter_table("login_sessions", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_login_sessions_expires_at"), ["expires_at"], unique=False)
            batch_op.create_index(batch_op.f("ix_login_sessions_user_id"), ["user_id"], unique=False)

    if "review_actions" not in existing:
        op.create_table("review_actions",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("case_id", sa.Integer(), nullable=False),
            sa.Column("action", sa.String(length=16), nullable=False),
            sa.Column("actor", sa.String(length=64), nullable=False),
            sa.Column("at", cases.db.UTCDateTime(timezone=True), nullable=False),
            sa.Column("details", sa.JSON(), nullable=False),
            sa.ForeignKeyConstraint(["case_id"], ["draft_cases.id"], ),
            sa.PrimaryKeyConstraint("id")
            )
        with op.batch_alter_table("review_actions", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_review_actions_case_id"), ["case_id"], unique=False)

    for table in APPEND_ONLY:
        _forbid_changes(table)


def _forbid_changes(table: str) -> None:
    """Triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL): the log is append-only."""
    message = f"{table} is append-only"
    if op.get_context().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    elif op.get_context().dialect.name == "postgresql":
        op.execute(f"CREATE OR REPLACE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$")
        op.execute(f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_refuse()")
        op.execute(f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse()")


def downgrade() -> None:
    for table in APPEND_ONLY:
        if op.get_context().dialect.name == "postgresql":
            op.execute(f"DROP FUNCTION IF EXISTS {table}_refuse() CASCADE")
    for table in ("review_actions", "case_events", "feed_entries", "case_evidence", "login_sessions", "flights",
                  "webhook_outbox", "users", "draft_cases", "clean_frames", "audit_log", "api_tokens"):
        op.drop_table(table)
