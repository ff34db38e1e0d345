"""The ``patrol`` command: demo, serve, worker, analyze, detect, eval, bench, train, export-dataset."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from core.settings import DEMO_DATA_DIR, ROOT, Settings, load_settings
from streams.sources import ConfigError
from training.recipes import DEFAULT_RECIPE, RECIPES  # plain data: no OpenCV at start-up

RECIPE_NUMBERS = sorted(RECIPES)
# The recipe of the held-out images that models are compared on (``patrol eval``).
HELDOUT_RECIPE = 5

# What the training extra (pip install '.[train]') brings; the runtime commands never import them.
TRAINING_PACKAGES = frozenset({"torch", "torchvision", "ultralytics", "onnx", "skimage", "matplotlib", "psutil"})

log = logging.getLogger("patrol")


def _fail(msg: str, code: int = 2) -> int:
    print(f"patrol: {msg}", file=sys.stderr)
    return code


def _training_extra_missing(command: str) -> str | None:
    """The message for a lab command run on the lean install, said before it renders anything."""
    import importlib.util

    for name in ("torch", "ultralytics"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            return f"patrol {command} needs the training extra: pip install '.[train]' (missing {name})"
    return None


def _settings(args, **overrides) -> Settings:
    return load_settings(getattr(args, "config", None), **overrides)


def patrol_command() -> str:
    """This ``patrol`` command as a shell runs it from anywhere, with no venv active:
    the absolute path of the installed script, else this Python with ``-m patrol.cli``."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "patrol" and argv0.is_file():
        return shlex.quote(os.path.abspath(argv0))
    return f"{shlex.quote(sys.executable)} -m patrol.cli"


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


# --- running system -----------------------------------------------------------------------


class Runtime:
    """Redis (given or embedded), the registry and the parts, for serve/worker/demo."""

    def __init__(self, settings: Settings, registry_path: Path | None = None):
        from core.wiring import Parts
        from streams.sources import load_registry
        from workers.bus import Bus, EmbeddedRedis

        self.settings = settings
        self.registry = load_registry(registry_path or settings.sources)
        self.parts = Parts(settings)
        self.embedded = None
        url = settings.redis_url
        if not url:
            self.embedded = EmbeddedRedis(settings.data_dir / "redis")
            url = self.embedded.url
            log.info("embedded Redis at %s", url)
        self.redis_url = url
        self.bus = Bus.connect(url)

    def keep_redis_up(self, stop: threading.Event) -> None:
        """An embedded Redis that dies is started again within seconds (a Redis server of
        the city's is its operators' to run)."""
        if self.embedded is not None:
            self.embedded.supervise(stop)

    def builder_thread(self, stop: threading.Event) -> threading.Thread:
        from workers.case_builder import CaseBuilderService

        service = CaseBuilderService(self.bus, self.parts.builder, self.registry)
        t = threading.Thread(target=service.run, args=(stop,), name="case-builder", daemon=True)
        t.start()
        return t

    def delivery_thread(self, stop: threading.Event) -> threading.Thread | None:
        """Webhook deliveries from the outbox (workers/webhooks.py), when any webhook is configured."""
        from workers.webhooks import Backoff, Endpoint, WebhookDelivery

        hooks, d = self.settings.webhooks, self.settings.delivery
        if not hooks:
            return None
        loop = WebhookDelivery(self.parts.store, [Endpoint(h.name, h.url, h.key(), h.timeout_s) for h in hooks],
                               self.settings.api.base_url, Backoff(d.backoff_base_s, d.backoff_max_s, d.max_attempts),
                               poll_s=d.poll_s)
        t = threading.Thread(target=loop.run, args=(stop,), name="webhooks", daemon=True)
        t.start()
        return t

    def upload_relay_thread(self, stop: threading.Event) -> threading.Thread:
        """Queued flights' jobs onto Redis, also those finished while it was down (workers/upload_relay.py)."""
        from workers.upload_relay import UploadJobRelay
        from workers.uploads import UploadQueue

        relay = UploadJobRelay(self.parts.flights, self.parts.upload_area, UploadQueue(self.bus.r))
        t = threading.Thread(target=relay.run, args=(stop,), name="upload-relay", daemon=True)
        t.start()
        return t

    def worker_thread(self, stop: threading.Event, source_ids: list[str] | None = None,
                      lease_ttl_s: float | None = None, worker_id: str | None = None) -> threading.Thread:
        """A patrol worker on its own thread. With ``lease_ttl_s`` it shares the sources
        with every other worker on this Redis by lease; without, it patrols them all."""
        from vision.pipeline import Pipeline
        from workers.leases import LeaseManager
        from workers.patrol import PatrolWorker, default_worker_id

        w = self.settings.worker
        sources = [s for s in self.registry if not source_ids or s.id in source_ids]
        pipeline = Pipeline(self.parts.detector, self.parts.rules)
        worker_id = worker_id or default_worker_id()
        leases = LeaseManager.connect(self.redis_url, worker_id, ttl_s=lease_ttl_s) if lease_ttl_s else None
        worker = PatrolWorker(self.bus, pipeline, sources, worker_id=worker_id, max_side=w.sample_max_side,
                              loop_files=w.loop_files, leases=leases, gil_switch_s=w.gil_switch_ms / 1000,
                              reader_options=w.reader_options(),
                              max_fix_age_s=self.settings.positions.max_fix_age_s,
                              spool_dir=self.settings.data_dir / "spool" / worker_id)
        t = threading.Thread(target=worker.run, args=(stop,), name="patrol-worker", daemon=True)
        t.start()
        return t

    def upload_thread(self, stop: threading.Event, worker_id: str | None = None) -> threading.Thread:
        """Upload jobs (workers/uploads.py) on their own thread, with a detector of their own
        (models are not shared between threads). Needs the upload area and the database."""
        from core.wiring import Parts
        from workers.uploads import UploadQueue, UploadWorker, consumer_name

        worker = UploadWorker(UploadQueue(self.bus.r), Parts(self.settings),
                              consumer=f"{worker_id}-uploads" if worker_id else consumer_name(),
                              claim_idle_ms=int(self.settings.uploads.claim_idle_s * 1000))
        t = threading.Thread(target=worker.run, args=(stop,), name="upload-worker", daemon=True)
        t.start()
        return t

    def retention_thread(self, stop: threading.Event) -> threading.Thread | None:
        """Evidence retention (cases/retention.py) now and every ``retention.every_minutes``."""
        from cases import retention

        r = self.settings.retention
        if not r.every_minutes:
            return None
        t = threading.Thread(target=retention.loop, args=(stop, self.parts.store, self.parts.evidence,
                                                          retention.Policy.from_settings(r), r.every_minutes * 60),
                             name="retention", daemon=True)
        t.start()
        return t

    def serve_api(self, stop: threading.Event, host: str, port: int) -> None:
        import uvicorn

        from api.app import create_app

        app = create_app(self.parts, self.bus, self.registry)
        app.state.stopping = stop  # long-lived responses (the consoles' event streams) end when it is set
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                               timeout_graceful_shutdown=5))
        watcher = threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit", True)), daemon=True)
        watcher.start()
        server.run()

    def close(self) -> None:
        self.bus.r.connection_pool.disconnect()
        if self.embedded is not None:
            self.embedded.close()


def cmd_demo(args) -> int:
    data_dir = Path(args.data_dir).absolute() if args.data_dir else DEMO_DATA_DIR
    settings = _settings(args, data_dir=str(data_dir),
                         sources=str(args.sources or ROOT / "config" / "demo_sources.yaml"))
    settings.worker.loop_files = True
    rt = Runtime(settings)
    stop = _stop_on_signals()
    rt.keep_redis_up(stop)
    threads = [rt.builder_thread(stop), rt.worker_thread(stop), rt.upload_thread(stop)]
    host, port = settings.api.host, args.port or settings.api.port
    settings.api.port = port  # evidence URLs in the feed and webhooks name the port actually served
    threads.append(rt.delivery_thread(stop))
    threads.append(rt.upload_relay_thread(stop))
    threads.append(rt.retention_thread(stop))
    print(f"City Patrol demo: {len(rt.registry)} sources from {settings.sources}", flush=True)
    print(f"  review page   http://{host}:{port}/", flush=True)
    print(f"  API (OpenAPI) http://{host}:{port}/docs", flush=True)
    print(f"  drone uploads http://{host}:{port}/uploads", flush=True)
    print(f"  data          {data_dir}  (Redis: {rt.redis_url})", flush=True)
    _print_demo_users(rt, data_dir)
    print("Draft cases appear as the sample videos play (within a minute or two). Ctrl-C stops.", flush=True)
    try:
        rt.serve_api(stop, host, port)
    finally:
        stop.set()
        _join(threads)  # before Redis closes: a thread still reading from it would break mid-call
        rt.close()
    return 0


def _join(threads, timeout_s: float = 10.0) -> None:
    """Wait for the threads to end (together at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    for t in threads:
        if t is not None:
            t.join(max(0.0, deadline - time.monotonic()))


def _print_demo_users(rt: Runtime, data_dir: Path) -> None:
    """The demo's first users, made on an empty user table, with passwords shown this once."""
    from patrol.accounts_cli import demo_users

    made = demo_users(rt.parts.accounts, rt.settings.auth.demo_password)
    for name, role, password in made:
        print(f"  log in as     {name} / {password}  ({role})", flush=True)
    if made and not rt.settings.auth.demo_password:
        print("                (random passwords, shown only now; set PATROL_AUTH__DEMO_PASSWORD to choose one)",
              flush=True)
    if not made:
        print(f"  log in as     the users of earlier runs "
              f"(PATROL_DATA_DIR={shlex.quote(str(data_dir))} {patrol_command()} user list)", flush=True)


def cmd_serve(args) -> int:
    settings = _settings(args)
    from cases.handling import load_handling

    load_handling(settings.cases.handling_file)  # the city's 721 rules: a mistake stops the start, not an approval
    rt = Runtime(settings)
    stop = _stop_on_signals()
    rt.keep_redis_up(stop)
    threads = []
    if not args.no_builder:
        threads.append(rt.builder_thread(stop))
    host, port = args.host or settings.api.host, args.port or settings.api.port
    settings.api.host, settings.api.port = host, port  # evidence URLs name what is actually served
    if not args.no_deliver:
        threads.append(rt.delivery_thread(stop))
    threads.append(rt.upload_relay_thread(stop))
    threads.append(rt.retention_thread(stop))
    print(f"City Patrol API on http://{host}:{port}/ (Redis: {rt.redis_url}; database: {settings.db_url})", flush=True)
    if not rt.parts.accounts.count_users():
        print("  no users yet: add the first with `patrol user add NAME --role admin`", flush=True)
    try:
        rt.serve_api(stop, host, port)
    finally:
        stop.set()
        _join(threads)
        rt.close()
    return 0


def cmd_worker(args) -> int:
    if args.lease_ttl <= 0:
        return _fail(f"--lease-ttl must be positive, not {args.lease_ttl:g}")
    settings = _settings(args)
    rt = Runtime(settings)
    stop = _stop_on_signals()
    rt.keep_redis_up(stop)
    ttl = None if args.no_leases else args.lease_ttl
    threads = [rt.worker_thread(stop, args.source, lease_ttl_s=ttl, worker_id=args.worker_id)]
    if args.with_builder:
        threads.append(rt.builder_thread(stop))
    if not args.no_uploads:
        threads.append(rt.upload_thread(stop, args.worker_id))
    n = len(args.source or rt.registry.sources)
    sharing = "all of them (no leases)" if args.no_leases else f"shared with other workers by lease (ttl {ttl:g} s)"
    uploads = "" if args.no_uploads else f"; drone upload jobs from {settings.uploads_dir}"
    print(f"patrol worker: {n} source(s), {sharing}, Redis {rt.redis_url}{uploads}", flush=True)
    try:
        while not stop.is_set() and all(t.is_alive() for t in threads):
            stop.wait(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        rt.close()
    return 0


def cmd_retention(args) -> int:
    """Apply the evidence retention rules once (``--dry-run``: only say what would go)."""
    from cases import retention
    from core.wiring import Parts

    settings = _settings(args)
    parts = Parts(settings)
    r = settings.retention
    report = retention.run(parts.store, parts.evidence, retention.Policy.from_settings(r), dry_run=args.dry_run,
                           actor="system:patrol-retention")
    print(report.summary())
    if args.verbose:
        for reason, ids in report.removed.items():
            print(f"  {retention.REASONS[reason]}: case ids {', '.join(map(str, ids))}")
    if report.usage and report.usage.warning:
        print(f"warning: {report.usage.warning}")
    parts.store.close()
    return 0


def cmd_accounts(args) -> int:
    """``patrol user ...`` / ``patrol token ...`` on the settings' database."""
    from core.wiring import Parts
    from patrol import accounts_cli

    settings, why = accounts_cli.product_settings(_settings(args))
    return accounts_cli.run(args, Parts(settings), why)


def cmd_db(args) -> int:
    """``patrol db upgrade`` / ``patrol db current`` on the settings' database."""
    from patrol import db_cli

    return db_cli.run(args, _settings(args).db_url)


# --- offline ------------------------------------------------------------------------------


def _progress(enabled: bool):
    if not enabled:
        return None
    start = time.monotonic()

    def show(t: float, total: float | None):
        if total:
            frac = min(1.0, t / total)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r  [{bar:<30}] {t:6.1f}/{total:.1f} s  {time.monotonic() - start:5.1f} s elapsed")
            if frac >= 1.0:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return show


def cmd_analyze(args) -> int:
    import tempfile

    from core.analyze import analyze_video, case_json, load_zones
    from core.wiring import Parts
    from streams.frame import GeoPoint
    from streams.placement import View
    from streams.reader import SourceError
    from streams.telemetry import TelemetryError
    from streams.tracks import TrackError, parse_moment
    from vision.detector import DetectorError

    video = Path(args.video)
    if not video.exists():
        return _fail(f"{video}: no such file")
    if not video.is_file():
        return _fail(f"{video}: not a file")
    if args.srt and not Path(args.srt).is_file():
        return _fail(f"{args.srt}: no such SRT file")
    if args.srt and args.track:
        return _fail("give either --srt (DJI telemetry) or --track (GPX, NMEA, CSV), not both")
    try:
        start = parse_moment(args.start) if args.start else None
    except TrackError as err:
        return _fail(str(err))
    settings = _settings(args)
    evidence = Path(args.evidence) if args.evidence else settings.data_dir / "analyze" / video.stem
    with tempfile.TemporaryDirectory(prefix="patrol-analyze-") as tmp:
        try:
            # the cases of one analysis live in a throwaway database; evidence stays where it is shown
            parts = Parts(settings, db_url=f"sqlite:///{Path(tmp) / 'cases.db'}", evidence_dir=evidence)
            zones = load_zones(args.zones) if args.zones else []
            loc = GeoPoint(args.lat, args.lon) if args.lat is not None and args.lon is not None else None
            view = View(args.kind, args.heading, args.view_offset, args.hfov)
            result = analyze_video(parts, video, kind=args.kind, srt=args.srt, zones=zones, location=loc,
                                   interval_s=args.interval, progress=_progress(not args.json and sys.stderr.isatty()),
                                   track=args.track, start=start, crs=args.crs, view=view,
                                   max_fix_age_s=args.max_fix_age or parts.settings.positions.max_fix_age_s)
        except (SourceError, TelemetryError, TrackError, ConfigError, DetectorError) as err:
            return _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
        for w in result.warnings:
            print(f"patrol: warning: {w}", file=sys.stderr)
        for case in result.cases:
            row = case_json(case, evidence)
            if args.json:
                print(json.dumps(row, ensure_ascii=False), flush=True)
            else:
                print(f"{row['case_no']}  {row['event_type']:<21} {row['category']['major']}/{row['category']['minor']} "
                      f"{row['category']['name']}  {row['start']:7.1f}-{row['end']:7.1f} s  conf {row['confidence']:.2f}  "
                      f"grid {row['grid'] or '-'}  {row['snapshot']}")
        if not args.json:
            print(f"{len(result.cases)} draft case(s); {result.samples} samples, {result.analysed} analysed", file=sys.stderr)
    if result.error:  # the cases above were found before the file broke off
        return _fail(f"{result.error.splitlines()[0]} (the {len(result.cases)} case(s) found before that are printed)")
    return 0


def cmd_detect(args) -> int:
    """Run the detector on single images: a quick check of the model on any photo."""
    import cv2

    from dataclasses import asdict

    from core.wiring import Parts
    from vision.detector import DetectorError
    from vision.plume import measure as plume_measure
    from vision.rules import image_events

    try:
        parts = Parts(_settings(args))
        detector = parts.detector
    except DetectorError as err:
        return _fail(str(err))
    failed = 0
    for path in args.images:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f"patrol: {path}: not a readable image", file=sys.stderr)
            failed += 1
            continue
        dets = detector.detect([image])[0]
        rows = []
        for lab, c, box in zip(dets.labels, dets.confidence, dets.xyxy):
            row = {"label": lab, "confidence": round(float(c), 3), "bbox": [round(float(v), 1) for v in box]}
            if lab == "dust":  # a plume is judged by more than its box score
                row["plume"] = asdict(plume_measure(image, box))
            rows.append(row)
        # the event types this picture alone supports, judged as the rules judge a sample
        events = image_events(image, dets, parts.rules)
        if args.json:
            print(json.dumps({"image": path, "detections": rows, "events": events}, ensure_ascii=False), flush=True)
        else:
            found = ", ".join(f"{r['label']} {r['confidence']:.2f}" for r in rows) or "nothing"
            print(f"{path}: {found}  ->  {', '.join(events) or 'no event'}")
    return 2 if failed else 0


def cmd_eval(args) -> int:
    """Box mAP on held-out images and event precision/recall/TTFD on held-out videos."""
    from core.wiring import Parts
    from training.evaluate import (HELDOUT_IMAGE_SEED, evaluate_boxes, evaluate_photos, evaluate_videos, example_frames,
                                 make_heldout_videos, plumes_by_view, video_set_folder, write_report)
    from training.photos import heldout_photos, missing_probes
    from training.train import generate_dataset
    from vision.detector import DetectorError

    settings = _settings(args)
    if args.real:
        return _eval_real(args, settings)
    if not args.skip_boxes and (problem := _training_extra_missing("eval")):  # ultralytics' box validator
        return _fail(problem)
    try:
        video_set = video_set_folder(args.video_seed, args.video_kind, args.videos)
    except ValueError as err:
        return _fail(str(err))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True))
    bar = (lambda what: (lambda d, n: sys.stderr.write(f"\r  {what} {d}/{n}" + ("\n" if d == n else ""))))
    try:
        parts = Parts(settings)
        result = {"model": parts.detector.version, "looks": parts.detector.looks}
    except DetectorError as err:
        return _fail(str(err))
    if not args.skip_boxes:
        images = work / "images"
        made = json.loads((images / "recipe.json").read_text()) if (images / "recipe.json").exists() else {}
        clouds = args.plume_labels == "cloud"
        wanted = {"recipe": args.recipe, "n_val": args.images, "seed": HELDOUT_IMAGE_SEED, "heldout": True,
                  "clouds": clouds}
        if args.regenerate or not (images / "data.yaml").exists() or any(made.get(k) != v for k, v in wanted.items()):
            say(f"rendering {args.images} held-out images (recipe {args.recipe}, seed {HELDOUT_IMAGE_SEED}, "
                f"plumes labelled by {args.plume_labels}) into {images}")
            generate_dataset(images, 0, args.images, seed=HELDOUT_IMAGE_SEED, recipe=args.recipe, heldout=True,
                             progress=bar("images"), clouds=clouds)
        say("box metrics ...")
        result["boxes"] = evaluate_boxes(settings.model.weights, images / "data.yaml", settings.model.imgsz, out)
        result["boxes"]["plume_labels"] = args.plume_labels
        result["boxes"]["dust_by_view"] = plumes_by_view(settings.model.weights, images, settings.model.imgsz,
                                                         args.recipe)
        example_frames(settings.model.weights, images / "images" / "val", settings.model.imgsz, settings.model.conf,
                       out / "examples.jpg")
        result["boxes"]["examples"] = "examples.jpg"
    if not args.skip_events:
        videos = Path(args.data) if args.data else work / video_set
        clips = None  # with --data: every clip in the folder
        if not args.data:
            what = "held-out" if video_set == "videos" else "development"
            say(f"{what} clips in {videos} ({args.videos})")
            clips = make_heldout_videos(videos, args.videos, seed=args.video_seed, kind=args.video_kind,
                                        progress=bar("videos rendered"))
        try:
            result["events"] = evaluate_videos(parts, videos, progress=bar("videos analysed"), out=out, only=clips)
        except (FileNotFoundError, ValueError) as err:
            return _fail(str(err))
    if not args.skip_photos:
        result["photos"] = evaluate_photos(parts, heldout_photos())
        result["photos"]["not_installed"] = missing_probes()
    report = write_report(result, out)
    (out / "eval.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(report.read_text(encoding="utf-8"))
    say(f"report: {report}")
    return 0


def _bench_review_loop(args) -> int:
    """bench review-loop: false cases on real no-violation footage, before and after one round
    of analysts' rejections → export → fine-tune."""
    from bench.review_loop import as_text, run
    from training.real_set import RealSetError

    settings = _settings(args)
    model = {"weights": Path(args.weights[0])} if args.weights else {}
    if args.imgsz:
        model["imgsz"] = args.imgsz
    if model:
        settings = settings.model_copy(update={"model": settings.model.model_copy(update=model)})
    out = Path(args.out or ROOT / "var" / "review-loop")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        report = run(settings, Path(args.real_dir), out, manifest=Path(args.manifest), epochs=args.epochs,
                     imgsz=args.imgsz, rendered=Path(args.rendered) if args.rendered else None, say=say)
    except (RealSetError, FileNotFoundError) as err:
        return _fail(str(err))
    print(json.dumps(report, ensure_ascii=False) if args.json else as_text(report))
    return 0


def _eval_real(args, settings) -> int:
    """patrol eval --real: the figures on real pictures only."""
    from core.wiring import Parts
    from training.evaluate_real import evaluate_real, real_report_lines
    from training.real_set import RealSetError
    from vision.detector import DetectorError

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bar = (lambda d, n: sys.stderr.write(f"\r  real pictures {d}/{n}" + ("\n" if d == n else ""))
           if d % 25 == 0 or d == n else None)
    try:
        parts = Parts(settings)
        result = {"model": parts.detector.version, "looks": parts.detector.looks,
                  "real": evaluate_real(parts, Path(args.real_dir), args.split, Path(args.manifest), progress=bar,
                                        boxes=not args.skip_boxes, out=out)}
    except (DetectorError, RealSetError, FileNotFoundError) as err:
        return _fail(str(err))
    from training.evaluate_real import failure_sheets

    sheets = failure_sheets(result["real"], Path(args.real_dir), out)
    # The same, drawn only from pictures whose licence lets the project publish them (the
    # model card's examples come from here).
    from training.evaluate_real import shareable
    from training.real_set import load_manifest

    public = {p.id for p in load_manifest(Path(args.manifest)) if shareable(p.licence)}
    sheets += failure_sheets(result["real"], Path(args.real_dir), out / "shareable", only=public)
    report = out / "report-real.md"
    report.write_text("\n".join(["# Evaluation on real pictures", "",
                                  f"Model: `{result['model']}` at {result['looks']}", "",
                                  *real_report_lines(result["real"]), "",
                                  *[f"![{p.parent.name}]({p.relative_to(out)})" for p in sheets]]) + "\n",
                      encoding="utf-8")
    (out / "eval-real.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, ensure_ascii=False) if args.json else report.read_text(encoding="utf-8"))
    return 0


def cmd_real_set(args) -> int:
    """patrol real-set fetch|summary|sources|add."""
    from training.real_set import (DEFAULT_MIRRORS, RealSetError, fetch, labels_of, load_manifest, sources_table,
                                   summary)

    manifest = Path(args.manifest)
    try:
        if args.what == "summary":
            print(json.dumps(summary(load_manifest(manifest), labels_of(manifest)), indent=2, ensure_ascii=False))
            return 0
        if args.what == "sources":
            print("\n".join(sources_table(load_manifest(manifest))))
            return 0
        mirrors = [Path(m) for m in args.mirror] if args.mirror else list(DEFAULT_MIRRORS)
        if args.what == "add":
            return _real_set_add(args, manifest, mirrors)
        bar = (lambda d, n: sys.stderr.write(f"\r  pictures {d}/{n}" + ("\n" if d == n else ""))
               if d % 25 == 0 or d == n else None)
        done = fetch(Path(args.out), manifest, mirrors=mirrors, download=args.download, progress=bar)
    except RealSetError as err:
        return _fail(str(err))
    for line in done["failed"]:
        print(f"patrol: {line}", file=sys.stderr)
    print(f"{done['written']} of {done['pictures']} pictures in {args.out}"
          + (f"; {done['removed']} files of pictures no longer in that split removed" if done["removed"] else ""))
    return 0 if not done["failed"] else 1


def _real_set_add(args, manifest: Path, mirrors: list[Path]) -> int:
    from training.real_add import add

    if not args.rows or not args.labels:
        return _fail("real-set add needs --rows NEW.csv and --labels FOLDER")
    if not Path(args.rows).is_file() or not Path(args.labels).is_dir():
        return _fail(f"real-set add: {args.rows if not Path(args.rows).is_file() else args.labels} does not exist")
    done = add(Path(args.rows), Path(args.labels), manifest, mirrors, args.download)  # RealSetError: caller
    print(f"added {done['added']} pictures to {manifest} ({done['positives']} with a violation; train {done['train']}, "
          f"eval {done['eval']}; {done['new_scenes']} new scenes). Refresh training/real/DATA.md: its counts, and "
          "its table of origins from `patrol real-set sources`")
    return 0


def _bench_capacity(args) -> int:
    """bench capacity / bench soak: sources per machine in real time, against ultralytics."""
    from bench.camera_media import MediaError
    from bench.capacity import CapacityBench, as_text, options_from_args, report_json
    from bench.simulate import SimulationError

    if args.what == "soak" and not args.sources:
        return _fail("bench soak needs --sources N (e.g. the figure bench capacity sustains)")
    for name in ("seconds", "warmup", "minutes"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            return _fail(f"--{name} must be positive")
    if args.sources is not None and args.sources < 1:
        return _fail("--sources must be at least 1")
    if args.seconds is None:
        args.seconds = 60.0
    try:
        bench = CapacityBench(options_from_args(args))
        report = bench.soak(args.minutes) if args.what == "soak" else bench.run()
    except (ValueError, SimulationError, MediaError) as err:
        return _fail(str(err))
    text = report_json(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    elif args.what == "soak":
        print(f"soak {report['sources']} sources, {report['soak_minutes']:g} min: RSS {report.get('rss_start_mb')} MB "
              f"at start, peak {report.get('rss_peak_mb')}, end {report.get('rss_end_mb')}, "
              f"slope {report.get('slope_mb_per_hour')} MB/h" + (f" ({report['error']})" if "error" in report else ""))
    else:
        print(as_text(report))
    return 0 if "error" not in report else 1


def _bench_decode(args) -> int:
    """bench decode: what a key frame and an average frame of each camera-cost stream cost."""
    from bench.camera_media import MediaError
    from bench.capacity import decode_costs
    from bench.simulate import CITY_MIX, CitySimulation, SimulationError, plan, progress_printer

    try:
        sim = CitySimulation(plan(CITY_MIX, args.samples), args.cache)
        sim.prepare(progress_printer(sys.stderr))
    except (SimulationError, MediaError) as err:
        return _fail(str(err))
    media = {Path(m["path"]).name: m for m in sim.media_table()}
    rows = decode_costs(sorted(Path(p) for p in sim.media))
    for r in rows:
        r.update({k: media[r["path"]][k] for k in ("profile", "width", "height", "kbps", "gop_s")})
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['path']}: {r['width']}x{r['height']} {r['kbps']:.0f} kbit/s GOP {r['gop_s']:g} s; key frame "
                  f"{r['key_frame_kb']} KB decodes in {r['decode_key_ms']} ms, an average frame in {r['decode_all_ms']} ms")
    return 0


def cmd_bench(args) -> int:
    from bench.detector import bench_detector

    if args.what in ("capacity", "soak"):
        return _bench_capacity(args)
    if args.what == "decode":
        return _bench_decode(args)
    if args.what == "review-loop":
        return _bench_review_loop(args)
    settings = _settings(args)
    if args.what == "samples":
        return _bench_samples(args, settings)
    if args.what == "shapes":
        return _bench_shapes(args, settings)
    if args.what == "detector":
        weights = [Path(w) for w in args.weights] if args.weights else [settings.model.weights]
        missing = [str(w) for w in weights if not w.exists()]
        if missing:
            return _fail(f"no such weights: {', '.join(missing)}")
        threads = settings.model.threads if args.threads is None else args.threads
        result = bench_detector(weights, args.imgsz or settings.model.imgsz, tuple(args.batch), args.seconds or 10.0,
                                threads)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"detector at {result['imgsz']} px on {result['cores']} cores ({result['cpu']}, "
                  f"{' '.join(result['vector_extensions'])}), inference threads {threads or 'auto'}:")
            for r in result["results"]:
                print(f"  {r['weights']:<28} {r['runtime']:<20} batch {r['batch']:>3}: {r['ms_per_image']:7.2f} "
                      f"ms/image, {r['cpu_ms_per_image']:7.2f} ms CPU/image ({r['images_per_s']} images/s)")
    return 0


def _bench_shapes(args, settings) -> int:
    """bench shapes: the detector's memory for every input shape a worker meets."""
    from bench.detector import bench_shapes
    from vision.detector import DetectorError

    m = settings.model
    if args.weights and len(args.weights) > 1:
        return _fail("bench shapes measures one model at a time: give one --weights")
    weights = Path(args.weights[0]) if args.weights else m.weights
    sizes = (args.imgsz or m.imgsz,) + ((m.confirm_imgsz,) if m.confirm_imgsz and not args.imgsz else ())
    threads = m.threads if args.threads is None else args.threads
    try:
        r = bench_shapes(weights, sizes, m.batch, threads=threads)
    except (DetectorError, ValueError) as err:
        return _fail(str(err))
    if args.json:
        print(json.dumps(r))
        return 0
    first, second = r["passes"]
    print(f"{r['weights']} ({r['runtime']}): {r['shapes']} input shapes (batch 1-{r['max_batch']} x pictures "
          f"{', '.join(r['pictures'])} at {' and '.join(f'{s} px' for s in r['sizes'])})")
    print(f"  RSS {r['rss_start_mb']} MB before; {first['rss_mb']} MB after running each shape once "
          f"(+{first['rss_mb'] - r['rss_start_mb']:.0f}, {first['seconds']} s); {second['rss_mb']} MB after "
          f"running them all again (+{second['rss_mb'] - first['rss_mb']:.0f}, {second['seconds']} s)")
    return 0


def _bench_samples(args, settings) -> int:
    """bench samples: the sample clips against their ground truth, the model loaded once."""
    from bench.samples import as_table, bench_samples
    from core.wiring import Parts
    from vision.detector import DetectorError

    try:
        report = bench_samples(Parts(settings), Path(args.samples),
                               progress=lambda name: sys.stderr.write(f"  {name}\n"))
    except (DetectorError, FileNotFoundError, ValueError) as err:
        return _fail(str(err))
    print(json.dumps(report) if args.json else as_table(report))
    return 0


def cmd_simulate(args) -> int:
    """Serve the sample clips as a simulated city of live sources; write its registry."""
    from bench.camera_media import MediaError
    from bench.simulate import CITY_MIX, KINDS, CitySimulation, SimulationError, plan, progress_printer

    given = {k: getattr(args, k) for k in KINDS}
    counts = dict(CITY_MIX) if all(v is None for v in given.values()) else {k: v or 0 for k, v in given.items()}
    if any(v < 0 for v in counts.values()):
        return _fail("source counts cannot be negative")
    if not sum(counts.values()):
        return _fail("nothing to simulate: every count is 0")
    try:
        sim = CitySimulation(plan(counts, args.samples), cache_dir=args.cache)
        sim.prepare(progress_printer(sys.stderr))
        served = sim.serve(args.transport, port=args.port)
    except (SimulationError, MediaError) as err:
        return _fail(str(err))
    try:
        out = served.write_registry(args.out)
        print(f"simulated city: {', '.join(f'{n} {k}' for k, n in counts.items() if n)} over {args.transport}")
        for m in sim.media_table():
            print(f"  media {m['path']}: {m['width']}x{m['height']} {m['fps']:g} fps, {m['kbps']:.0f} kbit/s, "
                  f"GOP {m['gop_s']:g} s, {m['duration_s']:g} s loop")
        if not args.quiet:
            for e in served.registry()["sources"]:
                print(f"  {e['id']:<20} {e['url']}" + (f"  (sub {e['sub_url']})" if e.get("sub_url") else ""))
        print(f"registry: {out}")
        if args.transport == "file":
            print("file sources play as live cameras in a worker with looping on, e.g.\n"
                  f"  PATROL_WORKER__LOOP_FILES=true PATROL_SOURCES={out} patrol worker --no-leases\n"
                  f"  patrol demo --sources {out}")
            return 0
        print(f"serving until Ctrl-C; e.g. PATROL_SOURCES={out} patrol worker --no-leases", flush=True)
        stop = _stop_on_signals()
        while not stop.wait(1.0):
            dead = served.failed()
            if dead:
                return _fail(f"the simulation lost a server or publisher: {dead[0]} (logs in {served.workdir})", 1)
        return 0
    finally:
        served.close()


def cmd_train(args) -> int:
    if problem := _training_extra_missing("train"):
        return _fail(problem)
    from training.train import (DataError, check_classes, class_repeats, generate_dataset, read_data_yaml,
                                 resume_problem, run_metrics, train, trainable_weights, weights_classes)

    run = Path(args.project) / args.name
    last = run / "weights" / "last.pt"
    extra = {"time": args.hours} if args.hours else {}
    # a fine-tune of a trained model may want a gentler start than a run from scratch
    extra.update({k: v for k, v in (("lr0", args.lr0), ("warmup_epochs", args.warmup_epochs),
                                    ("freeze", args.freeze)) if v is not None})
    args.imgsz = args.imgsz or _settings(args).model.imgsz  # train at the size the product detects at
    if args.resume:
        problem = resume_problem(last)
        if problem:
            return _fail(problem)
        print(f"patrol train: resuming run '{args.name}' from {last} (its own data, classes and epoch budget)",
              flush=True)
        best = train(args.data or "", args.project, resume=True, name=args.name)
    else:
        if args.class_repeat and not args.real:
            return _fail("--class-repeat weighs the real set's pictures: give --real too")
        if not (args.data or args.generate):
            return _fail("give --data DATA.yaml (fine-tune on a data set), --generate N (train on rendered pictures), "
                         "or --resume --name RUN (continue an interrupted run)")
        if last.exists():
            return _fail(f"{run} already holds a run; continue it with --resume --name {args.name}, "
                         "or choose another --name")
        from training.evaluate import HELDOUT_IMAGE_SEED

        if args.generate and args.seed == HELDOUT_IMAGE_SEED:  # its pictures would be patrol eval's
            return _fail(f"--seed {args.seed} renders patrol eval's held-out pictures; train on another seed")
        # A city's data set fine-tunes the configured model unless told otherwise.
        weights = args.weights or ("yolo11n.yaml" if args.generate else str(trainable_weights(_settings(args).model.weights)))
        if args.data:
            try:
                dataset = read_data_yaml(args.data)
                if not weights.endswith(".yaml"):  # (a model .yaml trains from scratch: any classes go)
                    check_classes(dataset.names, weights_classes(weights), f"{args.data}", f"weights {weights}")
            except DataError as err:
                return _fail(str(err))
            data = dataset.yaml
            what = (f"fine-tuning {weights}" if not weights.endswith(".yaml") else f"training {weights} from scratch")
            print(f"patrol train: {what} on {data}: {dataset.train_images} training and {dataset.val_images} "
                  f"validation images, {len(dataset.names)} classes ({', '.join(dataset.names)})", flush=True)
        else:
            out = Path(args.dataset_dir)
            from training.synth import missing_photo_packages, missing_photos

            missing = missing_photos(args.recipe)
            if missing:  # a warning, not a refusal: a city may train without the desktop packages
                packages = missing_photo_packages(args.recipe)
                print(f"patrol train: {len(missing)} photographs of recipe {args.recipe} are not installed here "
                      f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}): the pictures will differ from "
                      f"the model card's" + (f" (apt-get install {' '.join(packages)})" if packages else ""),
                      file=sys.stderr, flush=True)
            print(f"rendering {args.generate} training and {args.val} validation images (seed {args.seed}) into {out}", flush=True)
            data = generate_dataset(out, args.generate, args.val, seed=args.seed, size=(640, 384), recipe=args.recipe,
                                    progress=lambda d, n: print(f"\r  {d}/{n}", end="", flush=True) if d % 100 == 0 or d == n else None)
            print()
        if args.pretrained:
            from training.pretrained import PretrainedError, start_weights
            from vision.classes import CLASSES

            weights = str(run / "start.pt")
            try:
                stats = start_weights(Path(args.pretrained), dict(enumerate(CLASSES)), Path(weights))
            except PretrainedError as err:
                return _fail(str(err))
            print(f"patrol train: starting from {args.pretrained} (COCO, {stats['source_classes']} classes): "
                  f"{stats['tensors_copied']} of {stats['tensors_target']} tensors, {stats['params_copied']:,} of "
                  f"{stats['params_target']:,} parameters copied (backbone and neck); the head starts fresh", flush=True)
        if args.real:
            from training.train import pictures_in, with_extra_train

            real_train = Path(args.real) / "images" / "train"
            try:
                class_repeat = class_repeats(args.class_repeat, read_data_yaml(data).names)
            except DataError as err:
                return _fail(str(err))
            try:
                data = with_extra_train(data, real_train, run / "data.yaml", repeat=args.real_repeat,
                                        negative_repeat=args.negative_repeat,
                                        class_repeat={i: n for i, (_, n) in class_repeat.items()})
            except DataError as err:
                return _fail(f"{err} (run `patrol real-set fetch` first)")
            times = f", each {args.real_repeat} times an epoch" if args.real_repeat > 1 else ""
            if args.negative_repeat is not None:
                times += f"; those with no violation {args.negative_repeat} times"
            for name, n in class_repeat.values():
                times += f"; those with a {name} {n} times"
            print(f"patrol train: with {len(pictures_in(real_train))} real training pictures from {real_train}"
                  f"{times}", flush=True)
        # ultralytics sets the number of epochs from the budget once the first is timed, more or fewer
        budget = (f"a time budget of {args.hours:g} h (as many epochs as fit, counted after the first; "
                  "--epochs gives way to it)" if args.hours else f"{args.epochs} epochs")
        if args.freeze:
            budget += f", the first {args.freeze} layers frozen"
        print(f"patrol train: {budget} at {args.imgsz} px, batch {args.batch}; weights go to {run / 'weights'} "
              f"(last.pt after every epoch: resume with --resume --name {args.name}; best.pt at the end)", flush=True)
        best = train(data, args.project, model=weights, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                     name=args.name, **extra)
    metrics = run_metrics(run)
    if metrics:
        print("patrol train: done; validation after epoch {:.0f}: precision {:.3f}, recall {:.3f}, mAP50 {:.3f}, "
              "mAP50-95 {:.3f}".format(*(metrics.get(k, float("nan")) for k in
                                          ("epoch", "precision", "recall", "mAP50", "mAP50-95"))), flush=True)
    if args.output:
        dest = Path(args.output)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, dest)
        print(f"weights: {dest}")
        if args.onnx:
            from vision.detector import import_ultralytics

            import_ultralytics()
            from ultralytics import YOLO

            onnx = YOLO(str(dest)).export(format="onnx", imgsz=args.imgsz, dynamic=True, simplify=False)
            print(f"onnx: {onnx}")
    else:
        print(f"weights: {best}")
    return 0


def cmd_export_dataset(args) -> int:
    from cases.training_export import ExportError, export_dataset
    from core.wiring import Parts
    from training.train import DataError, weights_classes

    settings = _settings(args)
    parts = Parts(settings)
    try:
        since = _city_time(args.since, parts.store.local_tz, "--since") if args.since else None
        until = _city_time(args.until, parts.store.local_tz, "--until", end_of_day=True) if args.until else None
    except ValueError as err:
        return _fail(str(err))
    weights = Path(args.weights) if args.weights else settings.model.weights
    try:
        classes = weights_classes(weights)
    except DataError as err:
        return _fail(str(err))

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            print(f"\r  {stage}: {done}/{total}", end="\n" if done == total else "", flush=True)

    try:
        result = export_dataset(parts.store, parts.evidence, args.out, classes,
                                {c.event_type: c.labels for c in parts.rules}, since=since, until=until,
                                val_fraction=args.val_fraction, seed=args.seed,
                                include_drafts=args.include_drafts == "yes", force=args.force,
                                weights_name=str(weights), progress=progress)
    except ExportError as err:
        return _fail(str(err))
    missing = sum(1 for e in result.entries if e.why.startswith("evidence file"))
    print(f"exported {len(result.entries)} cases to {result.out}: {result.count('positive')} positives, "
          f"{result.count('negative')} hard negatives, {result.count('skipped')} skipped"
          + (f" ({missing} for missing or unreadable evidence files)" if missing else "")
          + f"; {result.images['train']} training and {result.images['val']} validation pictures")
    print(f"data set: {result.data_yaml} (manifest.json lists every case and why)")
    return 0


def _city_time(text: str, tz, flag: str, end_of_day: bool = False):
    """A date (the whole day, in the city's time) or an ISO time (naive: the city's time)."""
    from datetime import date, datetime, time as clock, timedelta

    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{flag} {text!r} is not a date (YYYY-MM-DD) or an ISO time") from None
        return when if when.tzinfo else when.replace(tzinfo=tz)
    return datetime.combine(day + timedelta(days=1 if end_of_day else 0), clock(), tz)


# --- entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patrol", description="City Patrol: video patrol for urban management.")
    p.add_argument("--config", help="settings YAML (default: $PATROL_CONFIG, else built-in defaults)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run everything on the sample videos: embedded Redis, SQLite, workers, API")
    d.add_argument("--port", type=int)
    d.add_argument("--sources", help="source registry (default: config/demo_sources.yaml)")
    d.add_argument("--data-dir", help="where the demo keeps its database and evidence (default: var/demo)")
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("serve", help="the API and the case builder")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--no-builder", action="store_true", help="serve only; let other processes build cases")
    s.add_argument("--no-deliver", action="store_true",
                   help="do not post webhooks from this process (another process delivers the outbox)")
    s.set_defaults(fn=cmd_serve)

    w = sub.add_parser("worker", help="patrol the registry's sources and publish events to Redis")
    w.add_argument("--source", action="append", help="patrol only this source id (repeatable)")
    w.add_argument("--with-builder", action="store_true", help="also run a case builder in this process")
    w.add_argument("--no-leases", action="store_true",
                   help="patrol every given source, without sharing them with other workers by lease")
    w.add_argument("--lease-ttl", type=float, default=10.0, metavar="S",
                   help="seconds a dead worker's sources stay leased before others take them (default 10)")
    w.add_argument("--worker-id", help="this worker's name in Redis; unique per process (default: worker-HOST-PID)")
    w.add_argument("--no-uploads", action="store_true",
                   help="do not take drone upload jobs (they need the upload area and the database)")
    w.set_defaults(fn=cmd_worker)

    a = sub.add_parser("analyze", help="analyse one video file offline and print its draft cases")
    a.add_argument("video")
    a.add_argument("--kind", choices=["fixed", "vehicle", "drone", "mobile"], default="fixed")
    a.add_argument("--srt", help="DJI telemetry side-car: positions for every detection")
    a.add_argument("--track", help="the camera's recorded track, GPX, NMEA or a t,lat,lon CSV (dashcams, phones): "
                                   "each case is placed where the camera was at its time")
    a.add_argument("--start", help="when the video's first frame was taken (ISO time, no zone = China time, or Unix "
                                   "seconds), to line a track's times up with the video; default: the file's "
                                   "creation_time")
    a.add_argument("--crs", choices=["wgs84", "gcj02", "bd09"], default="wgs84",
                   help="coordinate system of the track (phone map apps write gcj02 or bd09); default wgs84")
    a.add_argument("--max-fix-age", type=float, metavar="S",
                   help="a sample farther than this from the track's nearest point has no position "
                        "(default: positions.max_fix_age_s, 10 s)")
    a.add_argument("--heading", type=float, metavar="DEG",
                   help="the camera's view relative to the direction of travel (0 = ahead, 90 = right)")
    a.add_argument("--view-offset", type=float, metavar="M",
                   help="place cases this many metres ahead along the camera's view (default: at the camera)")
    a.add_argument("--hfov", type=float, metavar="DEG", help="drone camera's horizontal field of view, to place "
                                                              "a box on the ground from height and gimbal pitch")
    a.add_argument("--zones", help="YAML file of zones (no_vending, permitted_construction, watch)")
    a.add_argument("--lat", type=float, help="camera latitude (fixed cameras without telemetry)")
    a.add_argument("--lon", type=float, help="camera longitude")
    a.add_argument("--interval", type=float, help="seconds between analysed samples (default: the kind's patrol rate)")
    a.add_argument("--evidence", help="folder for evidence snapshots (default: DATA_DIR/analyze/<video's name>, "
                                      "DATA_DIR being the settings' data_dir, $PATROL_DATA_DIR, else var/)")
    a.add_argument("--json", action="store_true", help="one JSON object per draft case per line")
    a.set_defaults(fn=cmd_analyze)

    dt = sub.add_parser("detect", help="run the detector on images and print what it finds")
    dt.add_argument("images", nargs="+")
    dt.add_argument("--json", action="store_true", help="one JSON object per image per line")
    dt.set_defaults(fn=cmd_detect)

    ev = sub.add_parser("eval", help="evaluate the model on held-out images and videos")
    ev.add_argument("--data", help="folder of videos with ground truth (X.mp4 + X.json); default: render held-out clips")
    ev.add_argument("--videos", type=int, default=48, help="held-out clips to render when --data is not given")
    ev.add_argument("--video-seed", type=int, default=90_000,
                    help="first seed of the rendered clips; another than the held-out 90000 makes a development "
                         "set (its own folder; seeds overlapping the held-out clips are refused)")
    ev.add_argument("--video-kind", choices=["fixed", "vehicle", "drone", "mobile"],
                    help="render clips of this kind of source only (a development set)")
    ev.add_argument("--images", type=int, default=800, help="held-out images for box metrics")
    ev.add_argument("--work-dir", default=str(ROOT / "var" / "heldout"), help="where held-out data is rendered (kept)")
    ev.add_argument("--regenerate", action="store_true", help="render the held-out images again")
    ev.add_argument("--plume-labels", choices=["cloud", "each"], default="cloud",
                    help="held-out ground truth for plumes: one box per cloud of plumes that overlap or touch "
                         "(default) or one box per plume")
    ev.add_argument("--recipe", type=int, choices=RECIPE_NUMBERS, default=HELDOUT_RECIPE,
                    help="data recipe (training/recipes.py) of the held-out images: which views, photographs and "
                         f"labels they get (default: {HELDOUT_RECIPE}, the held-out set models are compared on)")
    ev.add_argument("--skip-boxes", action="store_true",
                    help="no box metrics (mAP50 on rendered pictures; with --real, AP50 on real boxes)")
    ev.add_argument("--skip-events", action="store_true")
    ev.add_argument("--skip-photos", action="store_true", help="skip the held-out real photographs (false alarms)")
    ev.add_argument("--out", default=str(ROOT / "var" / "eval"), help="report folder (report.md, pr_curve.png, eval.json)")
    ev.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ev.add_argument("--real", action="store_true",
                    help="evaluate on the real picture set instead (training/real/manifest.csv, brought here by "
                         "`patrol real-set fetch`): AP50 per class, recall per event type, false sightings on "
                         "no-violation pictures")
    ev.add_argument("--real-dir", default=str(ROOT / "data" / "real"), help="--real: where the set was fetched")
    ev.add_argument("--split", choices=["eval", "train", "all"], default="eval",
                    help="--real: which scenes (eval: never trained on)")
    ev.add_argument("--manifest", default=str(ROOT / "training" / "real" / "manifest.csv"),
                    help="--real: the set's manifest (its labels lie in labels/ beside it)")
    ev.set_defaults(fn=cmd_eval)

    rs = sub.add_parser("real-set", help="the real picture set: bring it here and check it, or count it")
    rs.add_argument("what", choices=["fetch", "summary", "sources", "add"],
                    help="fetch: every picture of training/real/manifest.csv into --out as a YOLO data set, "
                         "hash checked; summary: counts per split, kind, camera and class; sources: the table "
                         "of origins for training/real/DATA.md; add: append the labelled pictures of --rows "
                         "(label files in --labels) to the manifest, each checked against its file, split by scene")
    rs.add_argument("--rows", help="add: a CSV of new rows in the manifest's columns (sha256 and split may be "
                                   "empty: they are computed)")
    rs.add_argument("--labels", help="add: the folder of the new rows' label files, <id>.txt (empty: no violation)")
    rs.add_argument("--out", default=str(ROOT / "data" / "real"))
    rs.add_argument("--manifest", default=str(ROOT / "training" / "real" / "manifest.csv"))
    rs.add_argument("--mirror", action="append", help="folder of repository snapshots (<owner>+<name>/repo); "
                                                      "default /work/.mirror")
    rs.add_argument("--download", action="store_true",
                    help="fetch what no snapshot holds from GitHub at the recorded commit")
    rs.set_defaults(fn=cmd_real_set)

    b = sub.add_parser("bench", help="benchmarks (figures for docs/benchmarks.md)")
    b.add_argument("what", choices=["detector", "capacity", "soak", "decode", "review-loop", "samples", "shapes"],
                   help="detector: inference cost per image; capacity: sources one machine patrols in real time, "
                        "against ultralytics' streaming prediction; soak: memory over a long run; decode: CPU "
                        "per key frame and per frame of the simulator's camera-cost media; review-loop: false cases on real "
                        "footage before and after a fine-tune on their rejection; samples: the sample clips against "
                        "their ground truth; shapes: the detector's memory once it has met every input shape a "
                        "worker can meet (batch sizes, pictures, both looks)")
    b.add_argument("--weights", nargs="+", help="weights files to compare (.pt, .onnx, OpenVINO folder)")
    b.add_argument("--imgsz", type=int)
    b.add_argument("--threads", type=int, help="detector: inference threads of an export (default: model.threads)")
    b.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    b.add_argument("--seconds", type=float, help="time per measurement (detector 10, capacity 60)")
    b.add_argument("--json", action="store_true")
    b.add_argument("--mix", choices=["city", "fixed", "mobile"], default="city",
                   help="capacity: the city's kinds (50:3:1:200), fixed cameras only, or phones only")
    b.add_argument("--transport", choices=["file", "rtsp"], default="file",
                   help="capacity: files paced at real time (no server), or the simulator's RTSP server")
    b.add_argument("--warmup", type=float, default=15.0, help="capacity: seconds before measuring")
    b.add_argument("--start", type=int, default=8, help="capacity: first number of sources tried")
    b.add_argument("--max-sources", type=int, default=512, help="capacity: upper bound of the search")
    b.add_argument("--sources", type=int, help="capacity: measure this many sources, no search; soak: how many")
    b.add_argument("--gate", action="store_true", help="capacity: keep the change gate on (default: every "
                   "sample goes to the detector, as in the baseline)")
    b.add_argument("--no-baseline", action="store_true", help="capacity: skip ultralytics")
    b.add_argument("--no-pipeline", action="store_true", help="capacity: only the ultralytics baseline")
    b.add_argument("--baseline-urls", choices=["worker", "main"], default="worker",
                   help="capacity: the baseline reads the worker's URLs (a fixed camera's sub-stream; default) or "
                        "the registry's main URLs")
    b.add_argument("--gop", action="append", metavar="PROFILE=S",
                   help="capacity: key-frame interval of a media profile, e.g. hd720=2 (main1080, sub360, hd720, drone1080)")
    b.add_argument("--cache", default=str(ROOT / ".cache" / "sim"), help="capacity: prepared camera-cost media")
    b.add_argument("--samples", default=str(ROOT / "sample_videos"), help="capacity: the clips the sources play; samples: the clips analysed")
    b.add_argument("--profile", metavar="DIR", help="capacity: profile the pipeline at its sustained N with py-spy")
    b.add_argument("--minutes", type=float, default=30.0, help="soak: how long")
    b.add_argument("--out", help="capacity/soak: also write the JSON report here; review-loop: its folder "
                                 "(default var/review-loop)")
    b.add_argument("--real-dir", default=str(ROOT / "data" / "real"), help="review-loop: the fetched real set")
    b.add_argument("--manifest", default=str(ROOT / "training" / "real" / "manifest.csv"),
                   help="review-loop: the real set's manifest")
    b.add_argument("--epochs", type=int, default=3, help="review-loop: fine-tuning epochs")
    b.add_argument("--rendered", metavar="DATA.yaml",
                   help="review-loop: also fine-tune on these rendered pictures (their val set validates)")
    b.set_defaults(fn=cmd_bench)

    sm = sub.add_parser("simulate", help="serve the sample clips as a simulated city of live sources")
    for kind, n in (("fixed", 50), ("vehicle", 3), ("drone", 1), ("mobile", 200)):
        sm.add_argument(f"--{kind}", type=int, metavar="N",
                        help=f"{kind} sources (the city has {n}; with no count at all, the whole city)")
    sm.add_argument("--transport", choices=["rtsp", "rtmp", "file"], default="rtsp",
                    help="rtsp: one GStreamer RTSP server; rtmp: nginx-rtmp + one ffmpeg per stream; "
                         "file: no server, the registry points at the files (default rtsp)")
    sm.add_argument("--port", type=int, help="server port (default: a free one)")
    sm.add_argument("--out", default=str(ROOT / "var" / "sim" / "registry.yaml"), help="registry to write")
    sm.add_argument("--cache", default=str(ROOT / ".cache" / "sim"), help="prepared camera-cost media")
    sm.add_argument("--samples", default=str(ROOT / "sample_videos"), help="the clips to play (default sample_videos/)")
    sm.add_argument("-q", "--quiet", action="store_true", help="do not list every source's URL")
    sm.set_defaults(fn=cmd_simulate)

    t = sub.add_parser("train", help="train the detector (from generated data, or a YOLO data set)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--data", help="YOLO data.yaml to fine-tune on (e.g. from patrol export-dataset); fine-tunes "
                                    "model.weights of the settings unless --weights is given")
    src.add_argument("--generate", type=int, metavar="N", help="render N synthetic training images and train from scratch")
    t.add_argument("--val", type=int, default=300, help="validation images to render with --generate")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--recipe", type=int, choices=RECIPE_NUMBERS, default=DEFAULT_RECIPE,
                   help="data recipe (training/recipes.py) of the rendered pictures: which views, photographs and "
                        f"labels they get (default: {DEFAULT_RECIPE}, the default model's)")
    t.add_argument("--dataset-dir", default=str(ROOT / "data" / "synth"))
    t.add_argument("--weights", help="starting point: a .pt to fine-tune, or a model .yaml to train from scratch")
    t.add_argument("--pretrained", metavar="FILE",
                   help="start from the backbone and neck of YOLOv5 v6.1's COCO yolov5n.pt (checked by SHA-256; "
                        "models/README.md says where to get it) instead of --weights")
    t.add_argument("--real", metavar="DIR", nargs="?", const=str(ROOT / "data" / "real"),
                   help="also train on the real set's train scenes (as `patrol real-set fetch` wrote them; "
                        "default data/real); its eval scenes are never trained on")
    t.add_argument("--real-repeat", type=int, default=1, metavar="N",
                   help="--real: show each real picture N times an epoch (a few hundred real pictures weigh "
                        "as much as thousands of rendered ones)")
    t.add_argument("--negative-repeat", type=int, metavar="N",
                   help="--real: show each real picture without a violation N times an epoch instead "
                        "(default: as --real-repeat); more weighs false sightings more")
    t.add_argument("--class-repeat", action="append", default=[], metavar="CLASS=N",
                   help="--real: show each real picture holding a box of CLASS N times an epoch (repeatable, "
                        "e.g. --class-repeat stall=6: a class the model misses gets more of each epoch)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--hours", type=float, help="time budget in hours: as many epochs as fit (counted once the first is timed) replace --epochs")
    t.add_argument("--imgsz", type=int, help="input size (default: the settings' model.imgsz, 320)")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr0", type=float, help="initial learning rate (default 0.002, AdamW)")
    t.add_argument("--warmup-epochs", type=float, help="epochs of learning-rate warm-up (default 1)")
    t.add_argument("--freeze", type=int, metavar="N",
                   help="train only the layers after the first N (10: YOLOv5n's backbone stays as it is, and "
                        "only the neck and head learn; an epoch costs less)")
    t.add_argument("--project", default=str(ROOT / "runs" / "detect"))
    t.add_argument("--name", default="train")
    t.add_argument("--resume", action="store_true",
                   help="continue the interrupted run --name from its last.pt (with its own data and settings)")
    t.add_argument("--output", help="copy the best weights here (e.g. models/patrol-v14.pt)")
    t.add_argument("--onnx", action="store_true", help="also export ONNX next to --output")
    t.set_defaults(fn=cmd_train)

    x = sub.add_parser("export-dataset", help="write the reviewed draft cases as a YOLO data set for patrol train")
    x.add_argument("--out", required=True, help="folder to write (must be empty, or --force)")
    x.add_argument("--since", help="cases opened on or after this date (YYYY-MM-DD, or an ISO time; the city's time)")
    x.add_argument("--until", help="cases opened up to this date, inclusive (YYYY-MM-DD), or before an ISO time")
    x.add_argument("--val-fraction", type=float, default=0.1, help="share of pictures held out for validation")
    x.add_argument("--seed", type=int, default=0, help="seed of the train/val split (per picture, stable)")
    x.add_argument("--include-drafts", choices=["no", "yes"], default="no",
                   help="yes: unreviewed drafts too, as positives (the detector's own boxes; default no)")
    x.add_argument("--weights", help="the model whose class names and ids the data set uses (default: model.weights)")
    x.add_argument("--force", action="store_true", help="replace a previous export in --out")
    x.set_defaults(fn=cmd_export_dataset)

    rt = sub.add_parser("retention", help="remove evidence past its retention period or over the quota (retention: "
                                          "in the settings); `patrol serve` also does it every hour")
    rt.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    rt.set_defaults(fn=cmd_retention)

    from patrol.accounts_cli import add_parsers as add_account_parsers

    add_account_parsers(sub, cmd_accounts)
    from patrol.db_cli import add_parser as add_db_parser

    add_db_parser(sub, cmd_db)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from cases.grid import GridError
    from cases.handling import HandlingError
    from cases.migrate import SchemaError
    from cases.taxonomy import TaxonomyError

    try:
        return args.fn(args)
    except (ConfigError, TaxonomyError, HandlingError, GridError, SchemaError) as err:  # the city's files: say which and where
        return _fail(str(err))
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in TRAINING_PACKAGES:
            raise
        # the lean install: the lab's commands say what to install instead of a traceback
        return _fail(f"patrol {args.command} needs the training extra: pip install '.[train]' (missing {err.name})")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `patrol … | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
