"""indexes for waiting files: landing path with status, ready files

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index('ix_files_landing_path')
        batch_op.create_index('ix_files_landing_path_status', ['landing_path', 'status'],
                              unique=False)
        batch_op.create_index('ix_files_ready', ['status', 'batch_id', 'stable_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index('ix_files_ready')
        batch_op.drop_index('ix_files_landing_path_status')
        batch_op.create_index('ix_files_landing_path', ['landing_path'], unique=False)
