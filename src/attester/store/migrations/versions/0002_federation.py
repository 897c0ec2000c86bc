"""federation: certificate origins, peer-vouched user IDs, upstream lookup cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cert_origins',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('cert_id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=120), nullable=False),
    sa.Column('peer', sa.String(length=100), nullable=False),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('fetched_at', sa.DateTime(), nullable=False),
    sa.Column('armored', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['cert_id'], ['certs.id'], name=op.f('fk_cert_origins_cert_id_certs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cert_origins')),
    sa.UniqueConstraint('cert_id', 'origin', name=op.f('uq_cert_origins_cert_id_origin'))
    )
    with op.batch_alter_table('cert_origins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cert_origins_digest'), ['digest'], unique=False)
        batch_op.create_index('ix_cert_origins_peer_fetched', ['peer', 'fetched_at'], unique=False)

    op.create_table('origin_user_ids',
    sa.Column('origin_id', sa.Integer(), nullable=False),
    sa.Column('uid_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.ForeignKeyConstraint(['origin_id'], ['cert_origins.id'], name=op.f('fk_origin_user_ids_origin_id_cert_origins'), ondelete='CASCADE'),
    sa.UniqueConstraint('origin_id', 'uid_hash', name=op.f('uq_origin_user_ids_origin_id_uid_hash'))
    )
    with op.batch_alter_table('origin_user_ids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_origin_user_ids_email'), ['email'], unique=False)

    op.create_table('upstream_lookups',
    sa.Column('query_hash', sa.String(length=64), nullable=False),
    sa.Column('checked_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('found', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('query_hash', name=op.f('pk_upstream_lookups'))
    )
    with op.batch_alter_table('upstream_lookups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_lookups_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('upstream_lookups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_lookups_expires_at'))

    op.drop_table('upstream_lookups')
    with op.batch_alter_table('origin_user_ids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_origin_user_ids_email'))

    op.drop_table('origin_user_ids')
    with op.batch_alter_table('cert_origins', schema=None) as batch_op:
        batch_op.drop_index('ix_cert_origins_peer_fetched')
        batch_op.drop_index(batch_op.f('ix_cert_origins_digest'))

    op.drop_table('cert_origins')
