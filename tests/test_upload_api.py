"""Drone uploads over HTTP (api/routers/uploads.py): the real app, store, Redis and model.

The done-when of the upload issue: the drone clip and its SRT are uploaded in
chunks to a live server, the link drops mid-chunk, a new client asks where to go
on and finishes, and the drafts the analysis job makes carry coordinates and grid
codes from the telemetry. Hostile names, headers and oversized bodies are refused
with clear errors, and nothing is written outside the upload area.
"""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from auth_helpers import headers_for
from db_fixtures import db_url  # noqa: F401  (fixture)
from core.analyze import analyze_video
from core.settings import Settings, UploadSettings
from core.wiring import Parts
from streams.telemetry import TelemetrySample, parse_srt, write_srt
from test_bus import private_redis_db, redis_unreachable, wait_for
from workers.bus import Bus, EmbeddedRedis
from workers.uploads import JOBS, UploadJob, UploadQueue, UploadWorker

ROOT = Path(__file__).resolve().parents[1]
DRONE = ROOT / "sample_videos" / "drone_illegal_construction.mp4"
DRONE_SRT = ROOT / "sample_videos" / "drone_illegal_construction.SRT"
SHA256_JS = ROOT / "api" / "ui" / "templates" / "sha256.js"
CHUNK = 512 * 1024
LIMITS = UploadSettings(max_bytes=8 << 20, chunk_max_bytes=1 << 20, srt_max_bytes=1 << 20)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture
def redis_url(tmp_path):
    """The local Redis server (a database of this test's own), else an embedded one."""
    if redis_unreachable() is None:
        with private_redis_db() as url:
            yield url
    else:
        embedded = EmbeddedRedis(tmp_path / "redis")
        yield embedded.url
        embedded.close()


def make_parts(tmp_path: Path, db: str) -> Parts:
    return Parts(Settings(data_dir=tmp_path / "data", uploads=LIMITS), db_url=db)


@pytest.fixture
def app(db_url, tmp_path, redis_url):
    parts = make_parts(tmp_path, db_url)
    bus = Bus.connect(redis_url)
    yield create_app(parts, bus=bus)
    bus.r.close()
    parts.store.close()


def start(client, video: bytes, name="DJI_0042.MP4", srt: bytes | None = None, **extra) -> dict:
    body = {"filename": name, "size": len(video), "sha256": sha(video), **extra}
    if srt is not None:
        body["srt"] = {"filename": "DJI_0042.SRT", "size": len(srt), "sha256": sha(srt)}
    r = client.post("/api/v1/uploads", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def send(client, url: str, data: bytes, offset: int = 0, chunk: int = CHUNK) -> int:
    """Chunks from ``offset`` to the end, as a client does: go on from the answer's offset."""
    while offset < len(data):
        r = client.patch(url, content=data[offset:offset + chunk], headers={"Upload-Offset": str(offset)})
        if r.status_code == 423:  # the previous request still holds the part
            time.sleep(0.1)
            continue
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
    return offset


# ---------------------------------------------------------------------------------- the done-when


@contextmanager
def live_server(app):
    """The app on a real socket (uvicorn), so a client can really drop mid-request."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "uvicorn started")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def drop_mid_chunk(base: str, url: str, headers: dict, offset: int, announced: int, body: bytes) -> None:
    """A PATCH that announces ``announced`` bytes, sends ``len(body)`` and loses its link."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"PATCH {url} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Upload-Offset: {offset}\r\n"
               f"Content-Type: application/offset+octet-stream\r\nContent-Length: {announced}\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request + body)
        time.sleep(0.3)
        s.shutdown(socket.SHUT_WR)


@pytest.mark.slow  # the real model over the drone clip
def test_chunked_upload_interrupted_and_resumed_makes_drafts_with_coordinates_and_grid(tmp_path, redis_url):
    parts = make_parts(tmp_path, f"sqlite:///{tmp_path / 'cases.db'}")
    bus = Bus.connect(redis_url)
    app = create_app(parts, bus=bus)
    video, srt = DRONE.read_bytes(), DRONE_SRT.read_bytes()
    worker = UploadWorker(UploadQueue(bus.r), make_parts(tmp_path, f"sqlite:///{tmp_path / 'cases.db'}"),
                          analyze_video, consumer="uploads-api-test", claim_idle_ms=60_000)
    stop = threading.Event()
    worker_thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"block_ms": 200}, daemon=True)
    worker_thread.start()
    try:
        with live_server(app) as base:
            # The first client: starts the upload and sends two chunks, then its link drops mid-chunk.
            first_auth = headers_for(parts, "operator", "op-wang")
            with httpx.Client(base_url=base, headers=first_auth, timeout=30) as first:
                upload = start(first, video, srt=srt)
                assert upload["state"] == "uploading" and upload["video"]["offset"] == 0
                url = upload["video"]["url"]
                sent = send(first, url, video[:2 * CHUNK])
                assert sent == 2 * CHUNK
                drop_mid_chunk(base, url, first_auth, sent, CHUNK, video[sent:sent + 300_000])

            # A new client (a reload, another session) asks where the upload stands.
            with httpx.Client(base_url=base, headers=headers_for(parts, "operator", "op-wang"), timeout=30) as second:
                def offset_now():
                    r = second.head(url)
                    assert r.status_code == 200 and r.headers["Upload-Length"] == str(len(video))
                    return int(r.headers["Upload-Offset"])

                # the 300 000 bytes that arrived before the drop are kept: resume there, not at 0
                wait_for(lambda: offset_now() == sent + 300_000, 10, "the broken-off bytes stored")
                resume_at = offset_now()
                stale = second.patch(url, content=video[:CHUNK], headers={"Upload-Offset": "0"})
                assert stale.status_code == 409 and stale.json()["offset"] == resume_at
                assert stale.headers["Upload-Offset"] == str(resume_at)
                assert send(second, url, video, offset=resume_at) == len(video)
                # the SRT in one request, by Content-Range
                r = second.put(upload["srt"]["url"], content=srt,
                               headers={"Content-Range": f"bytes 0-{len(srt) - 1}/{len(srt)}"})
                assert r.status_code == 200 and r.json() == {"offset": len(srt), "size": len(srt), "complete": True}

                r = second.post(f"/api/v1/uploads/{upload['id']}/finish")
                assert r.status_code == 202, r.text
                assert r.json()["state"] == "queued" and r.json()["duration_s"] == 40.0

                seen = []

                def done():
                    status = second.get(f"/api/v1/uploads/{upload['id']}").json()
                    seen.append((status["state"], status["progress"]["percent"]))
                    return status if status["state"] in ("done", "failed") else None

                status = wait_for(done, 240, "the analysis job done")
                snapshot = second.get(status["cases"][0]["snapshot_url"]) if status["cases"] else None
    finally:
        stop.set()
        worker_thread.join(10)
    stored = parts.upload_area.path(upload["id"], "video").read_bytes()
    assert stored == video  # byte for byte, though one chunk broke off half-way

    assert status["state"] == "done" and status["error"] is None, status
    assert status["progress"]["percent"] == 100 and status["owner"] == "op-wang"
    percents = [p for s, p in seen if s == "processing"]
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents)
    track = parse_srt(DRONE_SRT)
    lats = [s.lat for s in track]
    assert status["cases"] and [c["event_type"] for c in status["cases"]] == ["illegal_construction"]
    assert status["cases"][0]["named"].startswith("私搭乱建 · ")  # as the uploads page shows it
    for case in status["cases"]:
        assert min(lats) <= case["lat"] <= max(lats) and abs(case["lon"] - 114.295) < 1e-4
        assert case["grid"] == parts.grid.cell_at(case["lat"], case["lon"])
        assert len(case["grid"]) == 14 and case["grid"].startswith("420117")
    assert snapshot.status_code == 200 and snapshot.content[:3] == b"\xff\xd8\xff"
    bus.r.close()


def test_the_page_hashes_files_as_the_server_does(tmp_path):
    """The upload page's incremental SHA-256 (sha256.js) against hashlib, under node."""
    try:
        probe = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        pytest.skip("node is not installed (apt-get install nodejs)")
    assert probe.returncode == 0
    script = f"""
const {{ Sha256 }} = require({json.dumps(str(SHA256_JS))});
const data = require("fs").readFileSync(process.argv[1]);
for (const step of [1, 63, 64, 65, 1000, 4194304]) {{
  const h = new Sha256();
  for (let i = 0; i < data.length; i += step) h.update(new Uint8Array(data.buffer, data.byteOffset + i, Math.min(step, data.length - i)));
  console.log(h.hex());
}}"""
    for path in (DRONE_SRT, tmp_path / "empty", tmp_path / "55"):
        if not path.exists():
            path.write_bytes(b"" if path.name == "empty" else bytes(range(55)))
        out = subprocess.run(["node", "-e", script, str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert set(out.stdout.split()) == {sha(path.read_bytes())}


def chromium_path() -> str | None:
    """A Chromium for playwright: the system's (Debian package), else playwright's own."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(path).exists():
            return path
    with sync_playwright() as p:
        own = p.chromium.executable_path
    return own if own and Path(own).exists() else None


@pytest.mark.slow  # the real model over the drone clip
def test_the_page_resumes_after_a_reload_and_shows_the_drafts(tmp_path, redis_url):
    """In a real browser: the link drops mid-upload, the operator reloads the page and
    picks the same files, and the page goes on from the server's offset."""
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no Chromium for playwright (apt-get install chromium, or `playwright install chromium`)")
    from playwright.sync_api import sync_playwright

    from auth_helpers import PASSWORD, make_user

    db = f"sqlite:///{tmp_path / 'cases.db'}"
    parts = make_parts(tmp_path, db)
    make_user(parts, "op-wang", "operator")
    bus = Bus.connect(redis_url)
    worker = UploadWorker(UploadQueue(bus.r), make_parts(tmp_path, db), analyze_video, consumer="uploads-page-test")
    stop = threading.Event()
    worker_thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"block_ms": 200}, daemon=True)
    worker_thread.start()
    patches: list[int] = []  # Upload-Offset of every video chunk the page sent
    dropped = threading.Event()

    def link(route):
        request = route.request
        if request.method == "PATCH":
            patches.append(int(request.headers["upload-offset"]))
            if len(patches) == 2 and not dropped.is_set():
                dropped.set()
                return route.abort("connectionreset")  # the second chunk never arrives
        return route.continue_()

    try:
        with live_server(create_app(parts, bus=bus)) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page()
            page.route("**/api/v1/uploads/*/video", link)
            page.goto(base + "/uploads")
            assert "/login" in page.url  # not logged in: sent to log in first
            page.fill("input[name=username]", "op-wang")
            page.fill("input[name=password]", PASSWORD)
            page.click("button")
            page.wait_for_url("**/uploads")
            # the site map: a click gives a point and the cell under it, as the server's grid says
            box = page.locator("#sitemap").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6)
            lat, lon = float(page.input_value("#lat")), float(page.input_value("#lon"))
            assert page.input_value("#grid") == parts.grid.cell_at(lat, lon)
            page.fill("#lat", "")
            page.fill("#lon", "")
            page.fill("#grid", "")  # this flight has telemetry: no site

            def pick_and_upload():
                page.set_input_files("#video", str(DRONE))
                page.set_input_files("#srt", str(DRONE_SRT))
                page.click("#start")

            pick_and_upload()
            page.wait_for_function("document.getElementById('phase').textContent.includes('Connection lost')",
                                   timeout=30_000)
            before_reload = list(patches)
            page.reload()
            pick_and_upload()
            page.wait_for_function("document.getElementById('jobinfo').textContent.startsWith('done')",
                                   timeout=240_000)
            page.wait_for_function("document.getElementById('found').textContent.includes('draft case')")
            page.wait_for_function("document.getElementById('flights').textContent.includes('done')")
            found = page.inner_text("#found")
            flights = page.inner_text("#flights")
            errors = page.inner_text("#error")
            browser.close()
    finally:
        stop.set()
        worker_thread.join(10)
        bus.r.close()
    assert before_reload == [0, 1 << 20], before_reload
    assert patches[2:] == [1 << 20, 2 << 20], patches  # after the reload: on from the server's offset
    assert errors == ""
    [flight] = parts.flights.list().items
    assert flight.state == "done" and flight.owner == "op-wang" and flight.case_ids
    assert parts.upload_area.path(flight.id, "video").read_bytes() == DRONE.read_bytes()
    case = parts.store.get_case(flight.case_ids[0])
    assert f"{case.lat:.6f}, {case.lon:.6f}" in found and case.grid in found and case.case_no in found
    assert "done" in flights and DRONE.name in flights


# ---------------------------------------------------------------------------------- refusals


def test_hostile_names_headers_and_oversized_bodies_are_refused(app, tmp_path):
    parts = app.state.parts
    area_root = parts.upload_area.root
    outside_before = files_under(tmp_path) - files_under(area_root)
    video = DRONE.read_bytes()
    with TestClient(app, headers=headers_for(parts, "operator", "op-wang")) as client:
        def create(**body):
            # json.dumps escapes what is not ASCII, so a lone surrogate travels as "\\udcff"
            body = json.dumps({"filename": "DJI_0042.MP4", "size": len(video), "sha256": sha(video), **body})
            return client.post("/api/v1/uploads", content=body, headers={"Content-Type": "application/json"})

        for name, expect in [("../../x.mp4", "plain name without folders"),
                             ("..\\..\\x.mp4", "plain name without folders"),
                             ("a" * 5000 + ".mp4", "5004 characters long; at most 255"),
                             ("DJI_\udcff.mp4", "not valid UTF-8"),
                             ("DJI_0042.avi", "must be an MP4 or MOV file")]:
            r = create(filename=name)
            assert r.status_code == 422 and expect in r.json()["detail"], (name[:20], r.text[:200])
        # undecodable bytes in the JSON itself
        raw = b'{"filename": "DJI_\xff\xfe.mp4", "size": 10, "sha256": "' + b"0" * 64 + b'"}'
        r = client.post("/api/v1/uploads", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["detail"]
        r = create(srt={"filename": "../DJI_0042.SRT", "size": 10, "sha256": "0" * 64})
        assert r.status_code == 422 and "plain name" in r.json()["detail"]
        r = create(size=LIMITS.max_bytes + 1)
        assert r.status_code == 413 and "8 MiB allowed" in r.json()["detail"]
        r = create(sha256="not-a-hash")
        assert r.status_code == 400 and "64 hexadecimal digits" in r.json()["detail"]
        assert files_under(area_root) == set()  # nothing refused left a file

        upload = start(client, video)
        url = upload["video"]["url"]
        for headers, status, expect in [
            ({"Upload-Offset": b"\xff\xfe"}, 400, "Upload-Offset must be a whole number"),
            ({"Upload-Offset": "-5"}, 400, "Upload-Offset must be a whole number"),
            ({"Content-Range": "bytes 0-9/10"}, 409, "the upload declared"),
            ({"Content-Range": b"bytes \xff-1/2"}, 400, "Content-Range must read"),
            ({}, 400, "say where the chunk starts"),
            ({"Upload-Offset": "4096"}, 409, "continue from 0"),
        ]:
            r = client.patch(url, content=b"x" * 100, headers=headers)
            assert r.status_code == status and expect in r.json()["detail"], (headers, r.text)
        # oversized: announced beyond the chunk limit; beyond the declared size
        r = client.patch(url, content=b"x" * ((1 << 20) + 1), headers={"Upload-Offset": "0"})
        assert r.status_code == 413 and "chunks are at most 1 MiB" in r.json()["detail"]
        tiny = start(client, b"0123456789", name="tiny.mp4")
        r = client.patch(tiny["video"]["url"], content=b"x" * 11, headers={"Upload-Offset": "0"})
        assert r.status_code == 413 and "only 10 bytes of the declared 10 remain" in r.json()["detail"]
        # ... and a body that does not announce its length (chunked transfer) and runs on
        r = client.patch(url, content=(b"y" * 65536 for _ in range(40)), headers={"Upload-Offset": "0"})
        assert r.status_code == 413
        assert client.head(url).headers["Upload-Offset"] == "0"
        # hostile ids and parts
        for bad in ("..%2F..%2Fx/video", f"{upload['id']}/..%2F..%2Fx", "%2e%2e/video", "a" * 300 + "/video"):
            r = client.patch(f"/api/v1/uploads/{bad}", content=b"x", headers={"Upload-Offset": "0"})
            assert r.status_code == 404, (bad, r.status_code)
        assert client.get(f"/api/v1/uploads/{upload['id']}/srt").status_code == 404  # no SRT declared

    inside = {p.relative_to(area_root).as_posix() for p in files_under(area_root)}
    assert inside == {f"{upload['id']}/video", f"{tiny['id']}/video"}
    assert all(p.stat().st_size == 0 for p in files_under(area_root))
    assert files_under(tmp_path) - files_under(area_root) - outside_before <= {
        p for p in files_under(tmp_path) if p.name.startswith(("cases.db", "redis"))}


def test_finishing_checks_sizes_hashes_and_content(app, tmp_path):
    parts = app.state.parts
    video, srt = DRONE.read_bytes(), DRONE_SRT.read_bytes()
    with TestClient(app, headers=headers_for(parts, "operator", "op-wang")) as client:
        # not all there: 409 with where to continue
        upload = start(client, video, srt=srt)
        send(client, upload["video"]["url"], video[:CHUNK])
        r = client.post(f"/api/v1/uploads/{upload['id']}/finish")
        assert r.status_code == 409 and f"continue from {CHUNK}" in r.json()["detail"]
        assert r.headers["Upload-Offset"] == str(CHUNK)

        # an SRT of another flight (20 s for a 40 s video)
        other = write_srt([TelemetrySample(t, 30.61 + t * 1e-5, 114.29) for t in range(20)], tmp_path / "o.SRT")
        bad_srt = other.read_bytes()
        upload = start(client, video, srt=bad_srt)
        send(client, upload["video"]["url"], video)
        send(client, upload["srt"]["url"], bad_srt)
        r = client.post(f"/api/v1/uploads/{upload['id']}/finish")
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "DJI_0042.SRT: telemetry does not match the video" in detail and "kept for inspection" in detail
        status = client.get(f"/api/v1/uploads/{upload['id']}").json()
        assert status["state"] == "rejected" and "does not match" in status["error"]
        assert parts.upload_area.path(upload["id"], "srt").read_bytes() == bad_srt  # kept
        assert client.post(f"/api/v1/uploads/{upload['id']}/finish").status_code == 409  # decided

        # bytes changed on the way: the hash says so
        upload = start(client, video)
        send(client, upload["video"]["url"], video[:-10] + b"\0" * 10)
        r = client.post(f"/api/v1/uploads/{upload['id']}/finish")
        assert r.status_code == 422 and "SHA-256" in r.json()["detail"]

        # the right size and hash, but not a video; and a truncated MP4
        for content, expect in [(b"not a video at all\n" * 5000, "not a media file"),
                                (video[: len(video) // 2], "cut off")]:
            upload = start(client, content, name="flight.mp4")
            send(client, upload["video"]["url"], content)
            r = client.post(f"/api/v1/uploads/{upload['id']}/finish")
            assert r.status_code == 422 and r.json()["detail"].startswith("flight.mp4: ") and expect in r.json()["detail"]
            assert client.get(f"/api/v1/uploads/{upload['id']}").json()["state"] == "rejected"
    assert app.state.bus.r.xlen(JOBS) == 0  # nothing rejected was queued


def test_without_telemetry_the_operators_site_starts_the_job(app):
    parts = app.state.parts
    bus = app.state.bus
    video = DRONE.read_bytes()
    cell = parts.grid.codes[100]
    with TestClient(app, headers=headers_for(parts, "operator", "op-wang")) as client:
        upload = start(client, video)
        send(client, upload["video"]["url"], video)
        r = client.post(f"/api/v1/uploads/{upload['id']}/finish")
        assert r.status_code == 202 and r.json()["state"] == "needs_site"
        assert bus.r.xlen(JOBS) == 0  # nothing to place the findings with yet
        r = client.put(f"/api/v1/uploads/{upload['id']}/site", json={"lat": 10.0, "lon": 10.0})
        assert r.status_code == 422 and "outside the city's grid" in r.json()["detail"]
        r = client.put(f"/api/v1/uploads/{upload['id']}/site", json={"grid": cell})
        assert r.status_code == 200 and r.json()["state"] == "queued" and r.json()["site_grid"] == cell
        [(_, fields)] = bus.r.xrange(JOBS)
        job = UploadJob.from_message(fields)
        assert (job.lat, job.lon) == pytest.approx(parts.grid.cell_center(cell)) and job.srt is None
        assert UploadQueue(bus.r).progress(upload["id"])["state"] == "queued"
        r = client.put(f"/api/v1/uploads/{upload['id']}/site", json={"grid": cell})
        assert r.status_code == 409  # queued: too late to move it

        # with the site given up front, finishing queues it at once
        upload = start(client, video, lat=30.6125, lon=114.295)
        send(client, upload["video"]["url"], video)
        r = client.post(f"/api/v1/uploads/{upload['id']}/finish")
        assert r.json()["state"] == "queued" and r.json()["site_grid"] == parts.grid.cell_at(30.6125, 114.295)
    assert bus.r.xlen(JOBS) == 2


def test_operators_see_their_own_flights_admins_all(app):
    parts = app.state.parts
    video = b"\0" * 1000
    with TestClient(app, headers=headers_for(parts, "operator", "op-wang")) as wang, \
         TestClient(app, headers=headers_for(parts, "operator", "op-li")) as li, \
         TestClient(app, headers=headers_for(parts, "admin", "boss")) as admin, \
         TestClient(app, headers=headers_for(parts, "analyst", "an-zhao")) as analyst:
        mine = start(wang, video, name="wang.mp4")
        theirs = start(li, video, name="li.mp4")
        assert [u["id"] for u in wang.get("/api/v1/uploads").json()["items"]] == [mine["id"]]
        assert [u["id"] for u in li.get("/api/v1/uploads").json()["items"]] == [theirs["id"]]
        assert li.get(f"/api/v1/uploads/{mine['id']}").status_code == 404
        assert li.head(mine["video"]["url"]).status_code == 404
        r = li.patch(mine["video"]["url"], content=b"x", headers={"Upload-Offset": "0"})
        assert r.status_code == 404 and parts.upload_area.offset(mine["id"], "video") == 0
        assert {u["owner"] for u in admin.get("/api/v1/uploads").json()["items"]} == {"op-wang", "op-li"}
        assert admin.get("/api/v1/uploads", params={"owner": "op-li"}).json()["total"] == 1
        assert admin.get(f"/api/v1/uploads/{mine['id']}").json()["owner"] == "op-wang"
        assert analyst.get("/api/v1/uploads").status_code == 403
        page = wang.get("/uploads")
        assert page.status_code == 200 and "class Sha256" in page.text and "Upload-Offset" in page.text
