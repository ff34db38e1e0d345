"""Alembic's environment for the case database: run through ``cases.migrate``, which
passes the connection (online) or the URL (``--sql``) in the configuration."""
from alembic import context
from sqlalchemy import create_engine

from cases.schema import METADATA

OPTIONS = dict(target_metadata=METADATA, render_as_batch=True, compare_type=True)  # batch: SQLite's ALTER TABLE


def run() -> None:
    cfg = context.config
    if context.is_offline_mode():
        context.configure(url=cfg.attributes.get("url") or cfg.get_main_option("sqlalchemy.url"),
                          literal_binds=True, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = cfg.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(cfg.attributes.get("url") or cfg.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        context.configure(connection=connection, **OPTIONS)
        context.run_migrations()


run()
