"""training curves per member and epoch; mean probabilities, member votes and rank per scored sample

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_epochs",
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("member", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=False),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("round_id", "member", "epoch"),
    )
    with op.batch_alter_table("sample_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mean_probs", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("member_predictions", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("rank", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample_scores", schema=None) as batch_op:
        batch_op.drop_column("rank")
        batch_op.drop_column("member_predictions")
        batch_op.drop_column("mean_probs")
    op.drop_table("training_epochs")
