"""one live label per sample (partial unique index) and the label each correction replaced

Revision ID: 0004
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Older databases may hold several live labels for one sample (a relabel of another
    # annotator's label kept both). The newest was the sample's label; the others become history.
    op.execute(
        sa.text(
            "UPDATE annotations SET superseded = :yes, superseded_at = created_at "
            "WHERE NOT superseded AND EXISTS (SELECT 1 FROM annotations AS newer "
            "WHERE newer.sample_id = annotations.sample_id AND NOT newer.superseded "
            "AND newer.id > annotations.id)"
        ).bindparams(yes=True)
    )
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaces_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_annotations_replaces", "annotations", ["replaces_id"], ["id"]
        )
        batch_op.create_index(
            "uq_annotations_one_live",
            ["sample_id"],
            unique=True,
            sqlite_where=sa.text("NOT superseded"),
            postgresql_where=sa.text("NOT superseded"),
        )


def downgrade() -> None:
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_index("uq_annotations_one_live")
        batch_op.drop_constraint("fk_annotations_replaces", type_="foreignkey")
        batch_op.drop_column("replaces_id")
