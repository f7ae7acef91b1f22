"""per-round pool summaries for the dashboard (histograms, scatter sample, galleries, stability)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rounds finished before this revision have no summary: the dashboard computes and stores
    # one the first time it shows such a round, so nothing is backfilled here.
    op.create_table(
        "round_pool_summaries",
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("previous_round_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("round_id"),
    )


def downgrade() -> None:
    op.drop_table("round_pool_summaries")
