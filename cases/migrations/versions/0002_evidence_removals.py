"""Evidence retention: when and why a case's evidence files were removed.

Created only where absent: a database made before migrations existed may have it.

Revision ID: 0002
Revises: 0001
"""
from alembic import context, op
import sqlalchemy as sa
import cases.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("evidence_removals"):
        return
    op.create_table("evidence_removals",
                    sa.Column("case_id", sa.Integer(), nullable=False),
                    sa.Column("removed_at", cases.db.UTCDateTime(timezone=True), nullable=False),
                    sa.Column("reason", sa.String(length=16), nullable=False),
                    sa.Column("keys", sa.JSON(), nullable=False),
                    sa.Column("files", sa.Integer(), nullable=False),
                    sa.Column("bytes", sa.BigInteger(), nullable=False),
                    sa.Column("shared", sa.Integer(), nullable=False),
                    sa.ForeignKeyConstraint(["case_id"], ["draft_cases.id"]),
                    sa.PrimaryKeyConstraint("case_id"))
    with op.batch_alter_table("evidence_removals") as batch_op:
        batch_op.create_index(batch_op.f("ix_evidence_removals_removed_at"), ["removed_at"], unique=False)


def downgrade() -> None:
    op.drop_table("evidence_removals")
