"""enterprise: removal from distribution, access tokens, an append-only audit log

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The audit log is append-only: the database itself refuses to change or delete a row,
# whatever code (or person with a SQL prompt and the application's role) tries.
_PG_GUARD = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"""
_SQLITE_GUARD = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END",
)


def upgrade() -> None:
    with op.batch_alter_table("certs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("removed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("user_ids", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("removed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("actor_kind", sa.String(length=16), server_default="system", nullable=False)
        )
        batch_op.add_column(sa.Column("client_address", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("domain", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=64), type_=sa.String(length=255)
        )
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_email"), ["email"], unique=False)
    # Entries written before actors had kinds: "operator" was the import, "oidc:<iss>" an
    # id token, "email" a confirmation link, "owner" a management link.
    op.execute(
        "UPDATE audit_log SET actor_kind = CASE "
        "WHEN actor = 'operator' THEN 'import' "
        "WHEN actor = 'email' THEN 'email' "
        "WHEN actor = 'owner' THEN 'owner' "
        "WHEN actor LIKE 'oidc:%' THEN 'oidc' "
        "ELSE 'system' END"
    )

    op.create_table(
        "removals",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=254), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", name=op.f("pk_removals")),
    )
    op.create_table(
        "access_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_access_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_tokens_token_hash")),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
    else:
        for statement in _SQLITE_GUARD:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    op.drop_table("access_tokens")
    op.drop_table("removals")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_email"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=255), type_=sa.String(length=64)
        )
        batch_op.drop_column("reason")
        batch_op.drop_column("domain")
        batch_op.drop_column("client_address")
        batch_op.drop_column("actor_kind")
    with op.batch_alter_table("user_ids", schema=None) as batch_op:
        batch_op.drop_column("removed")
    with op.batch_alter_table("certs", schema=None) as batch_op:
        batch_op.drop_column("removed")
