"""Build the product's parts from settings; every face (CLI, API, workers) starts here."""
from __future__ import annotations

from functools import cached_property

from cases.builder import CaseBuilder
from cases.evidence_store import EvidenceStore
from cases.grid import GridIndex
from cases.store import Store
from cases.taxonomy import Taxonomy
from core.settings import Settings
from vision.rules import default_rules


class Parts:
    """Lazily built parts, so a command pays only for what it uses."""

    def __init__(self, settings: Settings, db_url: str | None = None, evidence_dir=None):
        self.settings = settings
        self._db_url = db_url
        self._evidence_dir = evidence_dir

    def fork(self, db_url: str, evidence_dir=None) -> "Parts":
        """Parts over another database that share what is already loaded (model, codes, grid)."""
        other = Parts(self.settings, db_url=db_url, evidence_dir=evidence_dir or self._evidence_dir)
        for name in ("taxonomy", "handling", "grid", "detector", "rules"):
            if name in self.__dict__:
                other.__dict__[name] = self.__dict__[name]
        return other

    @cached_property
    def taxonomy(self) -> Taxonomy:
        c = self.settings.cases
        return Taxonomy.load(c.codes_file, c.categories_file)

    @cached_property
    def handling(self):
        from cases.handling import load_handling

        return load_handling(self.settings.cases.handling_file)

    @cached_property
    def grid(self) -> GridIndex | None:
        f = self.settings.cases.grid_file
        return GridIndex.from_geojson(f) if f else None

    @cached_property
    def store(self) -> Store:
        url = self._db_url or self.settings.db_url
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # each approval queues a delivery for every webhook subscribed to case.approved (cases/outbox.py)
        subscribers = {"case.approved": [h.name for h in self.settings.webhooks if "case.approved" in h.events]}
        return Store(url, case_prefix=self.settings.cases.case_prefix, webhooks=subscribers)

    @cached_property
    def accounts(self):
        from cases.accounts import Accounts

        return Accounts(self.store, session_hours=self.settings.auth.session_hours)

    @cached_property
    def flights(self):
        from cases.flights import FlightStore

        return FlightStore(self.store)

    @cached_property
    def upload_area(self):
        from streams.uploads import UploadArea

        u = self.settings.uploads
        return UploadArea(self.settings.uploads_dir, max_bytes=u.max_bytes, chunk_max_bytes=u.chunk_max_bytes,
                          srt_max_bytes=u.srt_max_bytes)

    @cached_property
    def evidence(self) -> EvidenceStore:
        return EvidenceStore(self._evidence_dir or self.settings.evidence_dir)

    @cached_property
    def builder(self) -> CaseBuilder:
        c = self.settings.cases
        return CaseBuilder(self.store, self.taxonomy, self.grid, self.evidence, cooldown_s=c.cooldown_s,
                           merge_radius_m=c.merge_radius_m, suppress_rejected_s=c.suppress_rejected_h * 3600)

    @cached_property
    def detector(self):
        from vision.detector import Detector

        m = self.settings.model
        return Detector(m.weights, imgsz=m.imgsz, conf=m.conf, device=m.device, max_batch=m.batch, threads=m.threads,
                        confirm_imgsz=m.confirm_imgsz, confirm_conf=m.confirm_conf)

    @cached_property
    def rules(self):
        return default_rules(self.settings.rules, names=self.taxonomy.picture_names())
