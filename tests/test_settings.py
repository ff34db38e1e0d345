"""Settings: one YAML file plus the environment, validated with messages that name the field."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from core.settings import load_settings
from streams.sources import ConfigError

SETTINGS_YAML = {
    "data_dir": "var/patrol",
    "sources": "my_sources.yaml",
    "redis_url": "redis://yaml-redis:6379/2",
    "database_url": "postgresql+psycopg2://patrol@yaml-db/patrol",
    "model": {"imgsz": 640, "conf": 0.4, "batch": 8},
    "cases": {"cooldown_s": 600, "case_prefix": "WH"},
    "api": {"port": 8088},
    "rules": {"dust": {"min_hits": 2}},
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The tests set the environment themselves; nothing of the caller's may leak in."""
    for name in list(os.environ):
        if name.startswith("PATROL_") or name in ("REDIS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, raw, name: str = "patrol.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return path


def config_error(path=None, **overrides) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(path, **overrides)
    return str(err.value)


def test_yaml_values_load(tmp_path):
    s = load_settings(write(tmp_path, SETTINGS_YAML))
    assert (s.model.imgsz, s.model.conf, s.model.batch) == (640, 0.4, 8)
    assert (s.cases.cooldown_s, s.cases.case_prefix, s.api.port) == (600, "WH", 8088)
    assert s.redis_url == "redis://yaml-redis:6379/2"
    assert s.db_url == "postgresql+psycopg2://patrol@yaml-db/patrol"
    assert s.rules == {"dust": {"min_hits": 2}}
    # relative paths are relative to the settings file, not to the working directory
    assert s.data_dir == tmp_path / "var" / "patrol"
    assert s.sources == tmp_path / "my_sources.yaml"


def test_without_a_database_url_the_database_is_sqlite_in_the_data_dir(tmp_path):
    s = load_settings(write(tmp_path, {"data_dir": str(tmp_path / "d")}))
    assert s.db_url == f"sqlite:///{tmp_path / 'd' / 'patrol.db'}"
    assert s.evidence_dir == tmp_path / "d" / "evidence"


def test_patrol_config_names_the_file_when_no_path_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("PATROL_CONFIG", str(write(tmp_path, SETTINGS_YAML)))
    assert load_settings().model.imgsz == 640


def test_the_environment_overrides_the_yaml_file(tmp_path, monkeypatch):
    path = write(tmp_path, SETTINGS_YAML)
    monkeypatch.setenv("PATROL_MODEL__IMGSZ", "416")
    monkeypatch.setenv("REDIS_URL", "redis://env-redis:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://patrol@env-db/patrol")
    monkeypatch.setenv("PATROL_CASES__COOLDOWN_S", "120")
    s = load_settings(path)
    assert s.model.imgsz == 416
    assert s.redis_url == "redis://env-redis:6379/0"
    assert s.db_url == "postgresql+psycopg2://patrol@env-db/patrol"
    assert s.cases.cooldown_s == 120
    # one nested key from the environment leaves its siblings from the file alone
    assert (s.model.conf, s.model.batch, s.cases.case_prefix) == (0.4, 8, "WH")


def test_the_environment_works_without_a_file(monkeypatch):
    monkeypatch.setenv("PATROL_API__PORT", "9001")
    monkeypatch.setenv("PATROL_REDIS_URL", "redis://other:6379/1")
    s = load_settings()
    assert (s.api.port, s.redis_url) == (9001, "redis://other:6379/1")


@pytest.mark.parametrize("raw, field, words", [
    ({"model": {"imgsz": 300}}, "model.imgsz", ["multiple of 32"]),
    ({"model": {"imgsz": "big"}}, "model.imgsz", ["integer"]),
    ({"model": {"conf": 1.5}}, "model.conf", ["less than 1"]),
    ({"model": {"confirm_imgsz": 400}}, "model.confirm_imgsz", ["multiple of 32"]),
    ({"api": {"port": 0}}, "api.port", ["greater than or equal to 1"]),
    ({"cases": {"cooldown_s": -1}}, "cases.cooldown_s", []),
    ({"modle": {"imgsz": 320}}, "modle", ["not permitted"]),  # a typo of a section
    ({"model": {"imgsize": 320}}, "model.imgsize", ["not permitted"]),  # a typo of a key
])
def test_an_invalid_value_in_the_file_names_the_field(tmp_path, raw, field, words):
    msg = config_error(write(tmp_path, raw))
    assert "patrol.yaml" in msg and field in msg
    for w in words:
        assert w in msg


def test_an_invalid_value_in_the_environment_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("PATROL_MODEL__IMGSZ", "abc")
    assert "model.imgsz" in config_error(write(tmp_path, SETTINGS_YAML))


def test_a_missing_settings_file_is_a_config_error(tmp_path):
    assert "not found" in config_error(tmp_path / "missing.yaml")


def test_invalid_yaml_is_a_config_error(tmp_path):
    msg = config_error(write(tmp_path, "model:\n  imgsz: [320\n"))
    assert "patrol.yaml" in msg and "not valid YAML" in msg


def test_a_file_that_is_not_a_mapping_is_a_config_error(tmp_path):
    assert "mapping" in config_error(write(tmp_path, "- imgsz: 320\n"))
