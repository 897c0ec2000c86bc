"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 14:07:00.088326
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_fingerprint'), ['fingerprint'], unique=False)

    op.create_table('certs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('version', sa.SmallInteger(), nullable=False),
    sa.Column('algorithm', sa.SmallInteger(), nullable=False),
    sa.Column('algorithm_name', sa.String(length=32), nullable=False),
    sa.Column('bits', sa.Integer(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('expires', sa.DateTime(), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('armored_identity_free', sa.Text(), nullable=False),
    sa.Column('armored_published', sa.Text(), nullable=True),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certs')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_certs_fingerprint'))
    )
    with op.batch_alter_table('certs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certs_digest'), ['digest'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('send_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('next_attempt', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('failed_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('send_id', name=op.f('uq_outbox_send_id'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['sent_at', 'failed_at', 'next_attempt'], unique=False)
        batch_op.create_index('ix_outbox_recipient_kind', ['recipient', 'kind', 'created'], unique=False)

    op.create_table('tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('expires', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_tokens_token_hash'))
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tokens_fingerprint'), ['fingerprint'], unique=False)

    op.create_table('key_ids',
    sa.Column('cert_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['cert_id'], ['certs.id'], name=op.f('fk_key_ids_cert_id_certs'), ondelete='CASCADE'),
    sa.UniqueConstraint('cert_id', 'fingerprint', name=op.f('uq_key_ids_cert_id_fingerprint'))
    )
    with op.batch_alter_table('key_ids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_key_ids_fingerprint'), ['fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_key_ids_key_id'), ['key_id'], unique=False)

    op.create_table('user_ids',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('cert_id', sa.Integer(), nullable=False),
    sa.Column('uid_hash', sa.String(length=64), nullable=False),
    sa.Column('uid_raw', sa.LargeBinary(), nullable=False),
    sa.Column('uid', sa.Text(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('attested_by', sa.String(length=16), nullable=True),
    sa.Column('attested_at', sa.DateTime(), nullable=True),
    sa.Column('wkd_hash', sa.String(length=32), nullable=True),
    sa.Column('wkd_binary', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['cert_id'], ['certs.id'], name=op.f('fk_user_ids_cert_id_certs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_ids')),
    sa.UniqueConstraint('cert_id', 'uid_hash', name=op.f('uq_user_ids_cert_id_uid_hash'))
    )
    with op.batch_alter_table('user_ids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_ids_email'), ['email'], unique=False)
        batch_op.create_index('ix_user_ids_email_attested', ['email', 'attested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_ids_wkd_hash'), ['wkd_hash'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('user_ids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_ids_wkd_hash'))
        batch_op.drop_index('ix_user_ids_email_attested')
        batch_op.drop_index(batch_op.f('ix_user_ids_email'))

    op.drop_table('user_ids')
    with op.batch_alter_table('key_ids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_key_ids_key_id'))
        batch_op.drop_index(batch_op.f('ix_key_ids_fingerprint'))

    op.drop_table('key_ids')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tokens_fingerprint'))

    op.drop_table('tokens')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_recipient_kind')
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    with op.batch_alter_table('certs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certs_digest'))

    op.drop_table('certs')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_fingerprint'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')

