"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from flowstone.queue.migrate import execute_ddl

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl("""
    """)


def downgrade() -> None:
    execute_ddl("""
    """)
