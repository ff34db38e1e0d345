"""Shared request dependencies: the parts and the bus hung on the app."""
from __future__ import annotations

from fastapi import Request

from core.wiring import Parts


def parts(request: Request) -> Parts:
    return request.app.state.parts


def bus(request: Request):
    return request.app.state.bus


def registry(request: Request):
    return request.app.state.registry
