"""samples.original_name: the file's path inside the imported folder, manifest folder or zip

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Samples imported before this revision keep NULL: their source name was never stored (zip
    # uploads were kept under their content hash), and guessing one would mislead.
    with op.batch_alter_table("samples") as batch:
        batch.add_column(sa.Column("original_name", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("samples") as batch:
        batch.drop_column("original_name")
