"""What every part shares about the city itself: its time zone.

The command centre reads China Standard Time (UTC+8, no daylight saving): case numbers carry
the city's local date, and every time a person reads is written in it. Defined once here, at
the bottom of the layers, so that streams, vision, cases, workers and the API agree.
"""
from __future__ import annotations

from datetime import timedelta, timezone

CITY_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
