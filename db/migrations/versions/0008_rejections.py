"""rejections: samples marked "not a valid sample" (sample status `rejected` while live)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rejections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("restored_at", sa.DateTime(), nullable=True),
        sa.Column("restored_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rejections_project", "rejections", ["project_id", "restored_at"])


def downgrade() -> None:
    # Rejected samples go back to the queue: the old schema knows only open and labeled.
    op.execute(
        sa.text(
            "UPDATE samples SET status = CASE WHEN label IS NULL THEN 'open' ELSE 'labeled' END "
            "WHERE status = 'rejected'"
        )
    )
    op.drop_index("ix_rejections_project", table_name="rejections")
    op.drop_table("rejections")
