"""recon: the SKS reconciliation set and its prefix tree

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 05:00:00.000000

The tables start empty; ``attester recon rebuild`` (or ``attester serve`` with recon
peers, when it finds the tree out of step) fills them from ``certs.digest``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recon_elements",
        sa.Column("element", sa.LargeBinary(length=16), nullable=False),
        sa.PrimaryKeyConstraint("element", name=op.f("pk_recon_elements")),
    )
    op.create_table(
        "recon_nodes",
        sa.Column("prefix", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("leaf", sa.Boolean(), nullable=False),
        sa.Column("svalues", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name=op.f("pk_recon_nodes")),
    )


def downgrade() -> None:
    op.drop_table("recon_nodes")
    op.drop_table("recon_elements")
