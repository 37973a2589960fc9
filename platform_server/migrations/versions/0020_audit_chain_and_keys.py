"""audit hash chain, data key fingerprint, organiser accounts, face lock-out kiosk

Revision ID: 0020
Revises: 0004
Create Date: 2026-12-04

- audit_log gets `seq` (its place in the chain, gap-free) and `mac` (HMAC over the previous entry's mac
  and this entry); `audit_chain` holds the chain's tip, updated in the writer's transaction (the row
  lock on it orders concurrent writers on PostgreSQL; SQLite's write lock does on SQLite).
  Rows written before this revision are chained by the first start that holds the data key; so only
  rows without a `seq` may be updated, once, and only their `seq` and `mac`.
- platform_keys: the data key's fingerprint (a different key is refused at start) and the audit chain
  key, encrypted under the data key; a key rotation in progress names its target here.
- accounts / account_tokens: organiser people, roles, scrypt password hashes, hashed API tokens.
- invitations.face_locked_by / face_locked_at: the kiosk whose attempt exhausted the face attempts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from platform_server.db.models import UtcDateTime

revision = '0020'
down_revision = '0010'
branch_labels = None
depends_on = None

_PG_GUARD = """
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Chaining a row written before the chain existed sets its seq and mac once; nothing else changes.
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL
       AND NEW.id = OLD.id AND NEW.occurred_at = OLD.occurred_at AND NEW.actor = OLD.actor
       AND NEW.action = OLD.action AND NEW.outcome = OLD.outcome AND NEW.detail = OLD.detail
       AND NEW.kiosk_time IS NOT DISTINCT FROM OLD.kiosk_time
       AND NEW.batch_code IS NOT DISTINCT FROM OLD.batch_code
       AND NEW.id_hash IS NOT DISTINCT FROM OLD.id_hash
       AND NEW.id_masked IS NOT DISTINCT FROM OLD.id_masked
       AND NEW.check_in_public_id IS NOT DISTINCT FROM OLD.check_in_public_id THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
"""
_PG_TRUNCATE_GUARD = """
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
"""
_SQLITE_UPDATE_GUARD = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "WHEN OLD.seq IS NOT NULL OR NEW.id IS NOT OLD.id OR NEW.occurred_at IS NOT OLD.occurred_at "
    "OR NEW.kiosk_time IS NOT OLD.kiosk_time OR NEW.actor IS NOT OLD.actor OR NEW.action IS NOT OLD.action "
    "OR NEW.outcome IS NOT OLD.outcome OR NEW.batch_code IS NOT OLD.batch_code OR NEW.id_hash IS NOT OLD.id_hash "
    "OR NEW.id_masked IS NOT OLD.id_masked OR NEW.check_in_public_id IS NOT OLD.check_in_public_id "
    "OR NEW.detail IS NOT OLD.detail "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
)


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_log_seq'), ['seq'], unique=True)
    op.create_table('audit_chain',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.Column('tip_mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain'))
    )
    op.execute("INSERT INTO audit_chain (id, seq, mac, tip_mac) VALUES (1, 0, '', '')")
    op.create_table('platform_keys',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('fingerprint', sa.String(length=32), nullable=False),
    sa.Column('audit_key_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('rotating_to', sa.String(length=32), nullable=True),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_platform_keys'))
    )
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('viewer', 'organiser', 'finance', 'admin')", name=op.f('ck_accounts_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('username', name=op.f('uq_accounts_username'))
    )
    op.create_table('account_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', UtcDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_tokens_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_tokens_token_hash'))
    )
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_tokens_account_id'), ['account_id'], unique=False)
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('face_locked_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('face_locked_at', UtcDateTime(timezone=True), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_GUARD)
        op.execute(_PG_TRUNCATE_GUARD)
    elif dialect == "sqlite":
        # batch_alter_table rebuilt audit_log on SQLite: its triggers went with the old table.
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute(_SQLITE_UPDATE_GUARD)
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_column('face_locked_at')
        batch_op.drop_column('face_locked_by')
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_tokens_account_id'))
    op.drop_table('account_tokens')
    op.drop_table('accounts')
    op.drop_table('platform_keys')
    op.drop_table('audit_chain')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_seq'))
        batch_op.drop_column('mac')
        batch_op.drop_column('seq')
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$"
        )
