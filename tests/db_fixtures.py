"""Shared fixtures of the case-domain tests: import the ones a test module uses.

``store`` runs every test that takes it twice: on a fresh SQLite file, and on
PostgreSQL (``DATABASE_URL_TEST``, default the local server) in a schema of its
own that is dropped afterwards, so parallel runs never see each other's rows.
"""
from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cases.grid import GridIndex
from cases.store import Store
from cases.taxonomy import Taxonomy

CONFIG = Path(__file__).resolve().parents[1] / "config"
PG_URL = os.environ.get("DATABASE_URL_TEST", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@functools.cache
def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as err:  # any failure to connect means: skip, and say why
        return f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)} unreachable: {err}".strip()
    finally:
        engine.dispose()
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh database per test: an SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.db'}"
        return
    reason = postgres_unreachable()
    if reason:
        pytest.skip(reason)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url):
    st = Store(db_url)
    yield st
    st.close()


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    return Taxonomy.load(CONFIG / "event_codes.csv", CONFIG / "categories.yaml")


@pytest.fixture(scope="session")
def grid() -> GridIndex:
    return GridIndex.from_geojson(CONFIG / "grid.geojson")
