"""Whether the automation (sensors, schedule) starts switched on."""

import os

import dagster as dg

AUTOMATION_ENV = "L1000_AUTOMATION"


def automation_default_status() -> dg.DefaultSensorStatus:
    """RUNNING unless ``L1000_AUTOMATION=off`` (then the sensors start stopped; the UI can
    still switch them on)."""
    off = os.environ.get(AUTOMATION_ENV, "on").strip().lower() in ("off", "0", "false", "no")
    return dg.DefaultSensorStatus.STOPPED if off else dg.DefaultSensorStatus.RUNNING


def schedule_default_status() -> dg.DefaultScheduleStatus:
    running = automation_default_status() == dg.DefaultSensorStatus.RUNNING
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
