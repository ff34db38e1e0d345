"""Settings: one YAML file plus environment variables, read once and passed down.

Precedence (highest first): environment (``PATROL_*``, ``REDIS_URL``,
``DATABASE_URL``), the YAML file (``--config`` or ``PATROL_CONFIG``), defaults.
Nested keys take ``__`` in the environment: ``PATROL_MODEL__IMGSZ=416``.
"""
from __future__ import annotations

import os
from pathlib import Path

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streams.sources import ConfigError, read_yaml
from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT / "var"
DEMO_DATA_DIR = DEFAULT_DATA_DIR / "demo"  # `patrol demo` (`make demo`) without --data-dir


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: Path = DEFAULT_WEIGHTS
    imgsz: int = Field(320, ge=64, le=1920, multiple_of=32)
    conf: float = Field(0.25, gt=0, lt=1)
    # a second look at this size at every sample on which the first look finds anything; only
    # what both looks find is kept (vision/detector.py). 0: one look
    confirm_imgsz: int = Field(416, ge=0, le=1920, multiple_of=32)
    # with two looks, the first look's floor: a box this sure at the first size is looked at
    # again, and kept if the second look finds it at `conf` or more (a far-off shed or plume is
    # faint at 320 px and clear at 416 px). Above `conf` it has no effect
    confirm_conf: float = Field(0.2, gt=0, lt=1)
    device: str = "cpu"
    batch: int = Field(16, ge=1, le=256)
    # inference threads of an exported model (OpenVINO, ONNX Runtime); 0: the runtime's choice
    # (every core). A worker whose readers decode on the same cores may do better with 1: an
    # inference thread that waits for a busy core spins.
    threads: int = Field(0, ge=0, le=256)


class CaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    codes_file: Path = ROOT / "config" / "event_codes.csv"
    categories_file: Path = ROOT / "config" / "categories.yaml"
    handling_file: Path = ROOT / "config" / "handling.yaml"  # the 721 handling rules (cases/handling.py)
    grid_file: Path | None = ROOT / "config" / "grid.geojson"
    cooldown_s: float = Field(300.0, ge=0)
    merge_radius_m: float = Field(30.0, ge=0)
    # a false alarm the analysts rejected raises no new draft at that place for this long
    suppress_rejected_h: float = Field(168.0, ge=0, le=24 * 366)
    case_prefix: str = "CP"


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # how the case platform reaches this API: evidence URLs in the feed and webhooks start with it
    public_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class WebhookSettings(BaseModel):
    """One endpoint of the case platform that is told about approvals as they happen."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # names its deliveries; keep it stable
    url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    secret: SecretStr | None = None  # the HMAC key, shared with the receiver ...
    secret_env: str | None = None  # ... or the environment variable that holds it (keeps it out of the file)
    events: list[Literal["case.approved"]] = Field(default_factory=lambda: ["case.approved"], min_length=1)
    timeout_s: float = Field(10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_secret(self):
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give the webhook either secret or secret_env (the name of an environment variable)")
        if self.secret_env is not None and not os.environ.get(self.secret_env):
            raise ValueError(f"secret_env names {self.secret_env}, which is not set in the environment")
        if len(self.key()) < 16:
            raise ValueError("the webhook secret must be at least 16 characters")
        return self

    def key(self) -> str:
        return self.secret.get_secret_value() if self.secret is not None else os.environ[self.secret_env]


class DeliverySettings(BaseModel):
    """How webhook deliveries are retried: exponential backoff with jitter, capped, then dead."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(12, ge=1, le=100)
    backoff_base_s: float = Field(5.0, gt=0)  # wait before the 2nd attempt; doubles each time
    backoff_max_s: float = Field(3600.0, gt=0)  # never wait longer than this
    poll_s: float = Field(2.0, gt=0, le=60)  # how often the loop looks for due deliveries


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_hours: float = Field(12.0, gt=0, le=24 * 90)  # a login lasts this long, then log in again
    # `patrol demo` only: the password of its first users (else a random one, printed once)
    demo_password: str | None = Field(None, min_length=8)
    # Logins (api/login_guard.py): password checks at once (each holds 32 MiB for ~0.3 s) and
    # how many may wait for one; more answer 429 "busy" at once.
    login_concurrency: int = Field(2, ge=1, le=16)
    login_queue: int = Field(8, ge=0, le=256)
    # Throttles over login_window_s: failed logins per user name, and attempts per client
    # address (a successful login is not counted). Over either: 429 with Retry-After.
    login_window_s: float = Field(300.0, gt=0, le=86400)
    login_failures_per_name: int = Field(5, ge=1)
    login_attempts_per_address: int = Field(30, ge=1)


class UploadSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: Path | None = None  # the upload area; default <data_dir>/uploads; shared by the API and upload workers
    max_bytes: int = Field(4 << 30, ge=1 << 20)  # one flight video
    chunk_max_bytes: int = Field(64 << 20, ge=64 << 10)  # one request's body
    srt_max_bytes: int = Field(64 << 20, ge=64 << 10)
    claim_idle_s: float = Field(60.0, gt=0)  # a job whose worker fell silent this long is taken over


class UiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A basemap the city serves under its maps (XYZ tiles in Web Mercator with WGS84/CGCS2000
    # coordinates, e.g. https://tiles.city.example/{z}/{x}/{y}.png). None: the grid alone, and
    # nothing is fetched (offline command centres).
    map_tiles_url: str | None = Field(None, pattern=r"^(https?://|/)\S*\{z\}\S*\{x\}\S*\{y\}\S*$")


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_max_side: int = Field(640, ge=64, le=4096)
    open_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(5.0, gt=0)
    stall_timeout_s: float = Field(10.0, gt=0)
    loop_files: bool = False  # replay file sources forever (demo and simulation)
    # How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
    # The detection loop calls into OpenCV, numpy and the runtime, giving up the GIL each time;
    # with a reader thread per source, getting it back can wait a whole switch interval each time.
    gil_switch_ms: float = Field(1.0, gt=0, le=100)
    # A live source's sampled key frames are decoded alone; without the deblocking filter
    # that costs a tenth less and changes the picture by about one grey level.
    deblock_key_frames: bool = False

    def reader_options(self) -> dict:
        """What every LiveReader of a worker is started with."""
        return {"open_timeout_s": self.open_timeout_s, "read_timeout_s": self.read_timeout_s,
                "stall_timeout_s": self.stall_timeout_s, "deblock_key_frames": self.deblock_key_frames}


class PositionSettings(BaseModel):
    """Live positions of vehicles, phones and the drone (POST /api/v1/positions, patrol:positions)."""

    model_config = ConfigDict(extra="forbid")
    max_fix_age_s: float = Field(10.0, gt=0, le=600)  # an older fix leaves a sample's place unknown
    max_distance_km: float = Field(30.0, gt=0)  # farther than this outside the city's grid (or sources): refused
    future_s: float = Field(60.0, ge=0, le=3600)  # a fix this far ahead of the server's clock is refused
    max_age_h: float = Field(24.0, gt=0)  # an older fix places nothing and is refused
    stream_max: int = Field(200_000, ge=1000)  # entries kept in the Redis Stream (about 15 min of 200 senders at 1 Hz)


class RetentionSettings(BaseModel):
    """How long evidence files are kept, and how much room they may take (cases/retention.py).

    The cases themselves (numbers, decisions, history) are never removed: only their
    pictures and clips, and a case whose evidence was removed says when and why."""

    model_config = ConfigDict(extra="forbid")
    rejected_days: float = Field(30.0, gt=0)  # a rejected case's evidence, counted from the decision
    draft_days: float = Field(90.0, gt=0)  # a draft nobody reviewed, counted from its last change
    # an approved case's evidence: the legal period the city keeps enforcement records for;
    # never removed for the quota, only once this has passed since the approval
    approved_days: float = Field(5 * 366.0, gt=0)
    quota_gb: float | None = Field(None, gt=0)  # the evidence folder's share of the disk; None: no quota
    warn_percent: float = Field(80.0, gt=0, le=100)  # health, /metrics and the console warn from here on
    # /health says degraded when the data folder's file system has less free than this
    min_free_mb: float = Field(256.0, ge=0)
    every_minutes: float = Field(60.0, ge=0)  # how often `patrol serve` runs retention (0: never)

    @property
    def quota_bytes(self) -> int | None:
        return int(self.quota_gb * (1 << 30)) if self.quota_gb else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATROL_", env_nested_delimiter="__", extra="forbid")

    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "PATROL_REDIS_URL"))
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "PATROL_DATABASE_URL"))
    data_dir: Path = DEFAULT_DATA_DIR
    sources: Path = ROOT / "config" / "demo_sources.yaml"
    model: ModelSettings = ModelSettings()
    cases: CaseSettings = CaseSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    uploads: UploadSettings = UploadSettings()
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    delivery: DeliverySettings = DeliverySettings()
    auth: AuthSettings = AuthSettings()
    positions: PositionSettings = PositionSettings()
    ui: UiSettings = UiSettings()
    retention: RetentionSettings = RetentionSettings()
    rules: dict[str, dict] = Field(default_factory=dict, description="per event type overrides of vision.rules")

    @field_validator("webhooks")
    @classmethod
    def _unique_webhook_names(cls, hooks: list[WebhookSettings]) -> list[WebhookSettings]:
        names = [h.name for h in hooks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"webhook names must be unique; repeated: {', '.join(repeated)}")
        return hooks

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return env_settings, init_settings  # the YAML file arrives as init kwargs; the environment wins

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'patrol.db'}"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "evidence"

    @property
    def uploads_dir(self) -> Path:
        return self.uploads.dir or self.data_dir / "uploads"


PATH_KEYS = {(): ("sources", "data_dir"), ("model",): ("weights",),
             ("cases",): ("codes_file", "categories_file", "handling_file", "grid_file"), ("uploads",): ("dir",)}


def _resolve_paths(raw: dict, base: Path) -> None:
    """Relative paths in a settings file are relative to that file, not to the working directory."""
    for section, keys in PATH_KEYS.items():
        node = raw
        for name in section:
            node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for key in keys:
            value = node.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                node[key] = str((base / value).resolve())


def load_settings(path: str | Path | None = None, **overrides) -> Settings:
    """Read the YAML file (if any) and the environment; raise ConfigError on mistakes."""
    path = path or os.environ.get("PATROL_CONFIG")
    raw: dict = {}
    if path:
        p = Path(path)
        raw = read_yaml(p, "settings file") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of settings")
        _resolve_paths(raw, p.parent)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**raw)
    except ValidationError as err:
        msgs = "; ".join(f"{_where(e['loc'], raw)}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path or 'settings'}: {msgs}") from None


def _where(loc: tuple, raw: dict) -> str:
    """The dotted field, and the environment variable when the value came from there."""
    field = ".".join(str(x) for x in loc)
    node = raw
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
    if node is None and loc:
        env = "PATROL_" + "__".join(str(x).upper() for x in loc)
        if env in os.environ:
            return f"{field} (from {env})"
    return field
