"""sample_scores: an OOD score per open sample, an out-of-sample label-issue score and the
suggested class per labeled sample, why a strategy picked a sample; samples: the
TypiClust cold-start order

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sample_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ood_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("label_issue", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("suggested_class", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("typical_rank", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("typical_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("typical_reason")
        batch_op.drop_column("typical_rank")
    with op.batch_alter_table("sample_scores", schema=None) as batch_op:
        batch_op.drop_column("reason")
        batch_op.drop_column("suggested_class")
        batch_op.drop_column("label_issue")
        batch_op.drop_column("ood_score")
