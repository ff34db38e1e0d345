"""``patrol bench review-loop``: the city's first weeks, measured on real footage.

What a city does from its first day: its cameras show streets without a violation, the model
raises false cases, analysts reject them, the rejected pictures become hard negatives, and a
fine-tuned model raises fewer. The benchmark runs that loop with the product's own parts:

1. **Footage.** The real set's no-violation scenes that are sequences (a camera's frames over
   time, a phone walking down a street) become H.264 clips, one picture every ``interval``
   seconds, played through ``patrol analyze``'s path (sampling, rules, case builder, store).
   Only scenes the default model never trained on (the real set's ``eval`` split) are used,
   halved by scene: the *reviewed* half is the city's first weeks, the *measured* half the
   weeks after. No scene is in both.
2. **Before.** The model under test analyses both halves; every case is a false one (the
   footage holds no violation). False cases per source-hour on the measured half: *before*.
3. **Review.** An analyst rejects each case of the reviewed half as a false alarm through the
   HTTP API (login, ``POST /api/v1/cases/{id}/reject``), served by uvicorn on loopback.
4. **Export and fine-tune.** ``export_dataset`` turns the rejected cases into hard negatives;
   the model is fine-tuned on them together with the real set's train split and rendered
   pictures (so what it learnt holds), the hard negatives shown often enough to be about 5 %
   of an epoch (a handful of rejections among thousands of pictures teach nothing).
5. **After.** The fine-tuned model analyses the measured half again; and the real positives of
   the eval split are checked before and after, so fewer false cases are not bought with
   missed violations.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2

from core.settings import Settings
from core.wiring import Parts
from training.real_set import MANIFEST, RealPicture, load_manifest

KIND_OF_CAMERA = {"fixed": "fixed", "vehicle": "vehicle", "drone": "drone", "mobile": "mobile", "photo": "mobile"}
MIN_PICTURES = 8  # a scene with fewer is not footage


@dataclass(frozen=True)
class Clip:
    path: Path
    scene: str
    kind: str
    seconds: float


def _half(scene: str) -> str:
    return "reviewed" if int(hashlib.sha1(scene.encode()).hexdigest()[:8], 16) % 2 == 0 else "measured"


def footage(dataset: Path, out: Path, manifest: Path = MANIFEST, interval: float = 2.0,
            max_side: int = 960) -> dict[str, list[Clip]]:
    """The eval split's no-violation sequences as clips, halved by scene (kept: a clip already
    made is not encoded again)."""
    import av
    import numpy as np

    scenes: dict[str, list[RealPicture]] = {}
    for p in load_manifest(manifest):
        if p.split == "eval" and p.kind == "negative":
            scenes.setdefault(p.scene, []).append(p)
    out.mkdir(parents=True, exist_ok=True)
    halves: dict[str, list[Clip]] = {"reviewed": [], "measured": []}
    for scene, pictures in sorted(scenes.items()):
        if len(pictures) < MIN_PICTURES:
            continue
        pictures.sort(key=lambda p: p.id)
        path = out / f"{scene.replace(':', '_').replace('/', '_')}.mp4"
        if not path.exists():
            frames = [cv2.imread(str(dataset / "images" / p.split / f"{p.id}{p.suffix}")) for p in pictures]
            if any(f is None for f in frames):
                raise FileNotFoundError(f"{dataset}: pictures of scene {scene} are missing; run `patrol real-set fetch`")
            h, w = frames[0].shape[:2]
            scale = min(1.0, max_side / max(h, w))
            size = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
            tmp = path.with_suffix(".part.mp4")
            with av.open(str(tmp), "w") as container:
                stream = container.add_stream("libx264", rate=Fraction(1, 1))
                stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
                stream.codec_context.time_base = Fraction(1, 10)
                for i, img in enumerate(frames):
                    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
                    frame.pts, frame.time_base = int(i * interval * 10), Fraction(1, 10)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            tmp.rename(path)
        kind = KIND_OF_CAMERA[pictures[0].camera]
        halves[_half(scene)].append(Clip(path, scene, kind, len(pictures) * interval))
    return halves


def false_cases(parts: Parts, clips: list[Clip], work: Path, interval: float,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Analyse each clip into its own store under ``work``; every case is a false one."""
    from core.analyze import analyze_video

    per_clip, total_cases, seconds = [], 0, 0.0
    for i, clip in enumerate(clips):
        run = parts.fork(f"sqlite:///{work / (clip.path.stem + '.db')}", work / "evidence")
        result = analyze_video(run, clip.path, kind=clip.kind, interval_s=interval, source_id=clip.scene)
        per_clip.append({"scene": clip.scene, "kind": clip.kind, "seconds": clip.seconds,
                         "cases": [c.event_type for c in result.cases], "ids": [c.id for c in result.cases],
                         "db": str(work / (clip.path.stem + ".db"))})
        total_cases += len(result.cases)
        seconds += clip.seconds
        if progress:
            progress(i + 1, len(clips))
    hours = seconds / 3600
    return {"clips": len(clips), "source_hours": round(hours, 3), "false_cases": total_cases,
            "per_source_hour": round(total_cases / hours, 2) if hours else None, "per_clip": per_clip}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reject_through_api(parts: Parts, case_ids: list[int], analyst: str = "review-loop") -> int:
    """An analyst rejects each case as a false alarm over HTTP; returns how many were rejected."""
    import secrets

    import httpx
    import uvicorn

    from api.app import create_app

    password = secrets.token_urlsafe(12)
    if parts.accounts.get_user(analyst) is None:
        parts.accounts.add_user(analyst, "analyst", password)
    else:
        parts.accounts.set_password(analyst, password)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(parts), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        with httpx.Client(base_url=base, timeout=30) as http:
            token = http.post("/api/v1/auth/login", json={"username": analyst, "password": password}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            done = 0
            for case_id in case_ids:
                r = http.post(f"/api/v1/cases/{case_id}/reject", headers=headers,
                              json={"reason": "false_alarm", "note": "review-loop benchmark: no violation in the footage"})
                r.raise_for_status()
                done += 1
        return done
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run(settings: Settings, dataset: Path, out: Path, *, manifest: Path = MANIFEST, interval: float = 2.0,
        epochs: int = 3, imgsz: int | None = None, rendered: Path | None = None, say=print) -> dict:
    """The whole loop; returns the report (also written to ``out/review-loop.json``)."""
    from cases.training_export import ExportError, export_dataset
    from core.analyze import analyze_video
    from training.evaluate_real import evaluate_real
    from training.train import (pictures_in, read_data_yaml, train, trainable_weights, weights_classes,
                                with_extra_train)

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    halves = footage(dataset, out / "clips", manifest, interval)
    say(f"footage: {len(halves['reviewed'])} reviewed and {len(halves['measured'])} measured clips "
        f"(no scene in both)")
    before = Parts(settings)
    bar = (lambda what: (lambda d, n: say(f"  {what} {d}/{n}") if d == n else None))
    report: dict = {"model": before.detector.version, "interval_s": interval}
    work = Path(tempfile.mkdtemp(prefix="review-loop-", dir=out))
    try:
        report["before"] = false_cases(before, halves["measured"], work / "before", interval, bar("measured, before"))
        # the reviewed half into one store, the one the analysts' console would show
        reviewed = before.fork(f"sqlite:///{work / 'reviewed.db'}", work / "evidence")
        ids = []
        for clip in halves["reviewed"]:
            result = analyze_video(reviewed, clip.path, kind=clip.kind, interval_s=interval, source_id=clip.scene)
            ids += [c.id for c in result.cases]
        hours = sum(c.seconds for c in halves["reviewed"]) / 3600
        say(f"reviewed half: {len(ids)} false cases in {hours:.2f} source-hours; rejecting them through the API")
        report["reviewed"] = {"clips": len(halves["reviewed"]), "source_hours": round(hours, 3), "false_cases": len(ids),
                              "rejected_via_api": reject_through_api(reviewed, ids)}
        weights = Path(settings.model.weights)
        start = trainable_weights(weights)
        classes = weights_classes(start)
        try:
            export = export_dataset(reviewed.store, reviewed.evidence, out / "export", classes,
                                    {c.event_type: c.labels for c in reviewed.rules}, force=True,
                                    weights_name=str(start))
            negatives, images = export.count("negative"), export.images
        except ExportError:  # fewer than two pictures: a model this quiet gives too little to learn from
            negatives, images = 0, {}
        report["export"] = {"hard_negatives": negatives, "images": images}
        if negatives < 2:
            report["after"] = report["before"]
            report["note"] = (f"the model raised {len(ids)} false case(s) on the reviewed half: too few to learn "
                              "from (an export needs two pictures)")
            return _finish(report, out)
        # every exported picture trains, weighted so that the analysts' rejections are a set share of
        # an epoch rather than a few pictures among thousands; validation is the rendered set's
        data = rendered or export.data_yaml
        exported = [f for f in (out / "export" / "images" / s for s in ("train", "val")) if pictures_in(f)]
        real_train = dataset / "images" / "train"
        others = len(pictures_in(real_train)) + (read_data_yaml(rendered).train_images if rendered else 0)
        repeat = hard_negative_repeat(sum(len(pictures_in(f)) for f in exported), others)
        for n, folder in enumerate(exported):
            data = with_extra_train(data, folder, out / f"mix-{n}.yaml", repeat=repeat)
        if pictures_in(real_train):
            data = with_extra_train(data, real_train, out / "mix-real.yaml")
        report["export"]["repeat"] = repeat
        say(f"fine-tuning {start} on {negatives} hard negatives, each {repeat} times an epoch (+ the real train split"
            f"{' and rendered pictures' if rendered else ''}) for {epochs} epochs")
        with contextlib.redirect_stdout(sys.stderr):  # ultralytics' chatter: stdout carries the report
            best = train(data, out / "runs", model=str(start), epochs=epochs, imgsz=imgsz or settings.model.imgsz,
                         batch=16, name="finetune", lr0=0.0005, warmup_epochs=0, close_mosaic=0)
        last = best.parent / "last.pt"
        tuned = Parts(settings.model_copy(update={"model": settings.model.model_copy(update={"weights": last})}))
        report["tuned_model"] = str(last)
        report["after"] = false_cases(tuned, halves["measured"], work / "after", interval, bar("measured, after"))
        for name, parts in (("before", before), ("after", tuned)):
            real = evaluate_real(parts, dataset, "eval", manifest, boxes=False)
            report[name]["real_eval_recall"] = {k: v for k, v in real["recall"].items() if "/" not in k}
            report[name]["real_eval_no_violation_share"] = real["no_violation"]["all"]["share"]
        return _finish(report, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


HARD_NEGATIVE_SHARE = 0.05  # of an epoch's pictures: what the analysts rejected, shown this often


def hard_negative_repeat(exported: int, others: int, share: float = HARD_NEGATIVE_SHARE) -> int:
    """How many times each exported picture is shown an epoch so that together they are about
    ``share`` of it (at least once)."""
    if exported <= 0:
        return 1
    return max(1, round(share * others / ((1 - share) * exported)))


def _finish(report: dict, out: Path) -> dict:
    b, a = report["before"]["per_source_hour"], report["after"]["per_source_hour"]
    report["reduction"] = round(1 - a / b, 3) if b else None
    for side in ("before", "after"):
        report[side] = {k: v for k, v in report[side].items() if k != "per_clip"} | {
            "per_clip": [{k: v for k, v in c.items() if k not in ("ids", "db")} for c in report[side]["per_clip"]]}
    (out / "review-loop.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def as_text(r: dict) -> str:
    b, a = r["before"], r["after"]
    lines = [f"review loop on real no-violation footage (model {r['model']}, one sample every {r['interval_s']:g} s)",
             f"  reviewed half: {r['reviewed']['clips']} clips, {r['reviewed']['source_hours']} source-hours, "
             f"{r['reviewed']['false_cases']} false cases rejected through the API",
             f"  hard negatives exported: {r['export']['hard_negatives']}"
             + (f", each shown {r['export']['repeat']} times an epoch" if r['export'].get('repeat', 1) > 1 else ""),
             f"  measured half: {b['clips']} clips, {b['source_hours']} source-hours",
             f"  false cases per source-hour: before {b['per_source_hour']}, after {a['per_source_hour']}"
             + (f" ({abs(r['reduction']):.0%} {'fewer' if r['reduction'] >= 0 else 'more'})"
                if r.get("reduction") is not None else "")]
    for side in ("before", "after"):
        if "real_eval_recall" in r[side]:
            rec = ", ".join(f"{k} {v['recall']}" for k, v in r[side]["real_eval_recall"].items())
            lines.append(f"  {side}: real eval recall {rec}; no-violation pictures with a sighting "
                         f"{r[side]['real_eval_no_violation_share']}")
    if r.get("note"):
        lines.append(f"  note: {r['note']}")
    return "\n".join(lines)
