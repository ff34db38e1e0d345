"""A request that needs to write while the disk is full: 503 with Retry-After, not 500.

A full disk is transient (retention or an operator frees room), so the client is
told to come back rather than shown a traceback; the refusal is remembered for
``/health``. Any other error is left to the default handling.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from cases.disk import FAULTS, RETRY_AFTER_S, is_disk_full

log = logging.getLogger(__name__)


async def _disk_full(request: Request, err: Exception):
    if not is_disk_full(err):
        raise err  # not ours: the server's own handling (500, logged)
    FAULTS.failed("request", err)
    log.warning("%s %s refused: the disk is full (%s)", request.method, request.url.path,
                str(err).splitlines()[0] if str(err) else type(err).__name__)
    return JSONResponse({"detail": "the server's disk is full: nothing could be written; try again later"},
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def register(app: FastAPI) -> None:
    app.add_exception_handler(OSError, _disk_full)
    app.add_exception_handler(DBAPIError, _disk_full)
