"""``weekly_refresh_schedule``: re-check every release once a week, whatever the sensor saw."""

import dagster as dg

from l1000_assets.defs.automation.jobs import release_files_job
from l1000_assets.lib.automation import schedule_default_status
from l1000_assets.lib.partitions import release_partitions

WEEKLY_CRON = "0 4 * * 1"  # Mondays 04:00 UTC


@dg.schedule(
    name="weekly_refresh_schedule",
    job=release_files_job,
    cron_schedule=WEEKLY_CRON,
    execution_timezone="UTC",
    default_status=schedule_default_status(),
    description=(
        "Mondays 04:00 UTC: one release_files_job run per release partition. Unchanged files "
        "cost a HEAD request (or a fingerprint) and keep their data version, so nothing else "
        "runs; files that changed are fetched, and release_metadata and everything downstream "
        "(lake, model, embeddings, evaluation, catalog) follow by declarative automation. A "
        "safety net for changes the sensor missed (it was stopped, a source was down)."
    ),
)
def weekly_refresh_schedule(context: dg.ScheduleEvaluationContext):
    releases = context.instance.get_dynamic_partitions(release_partitions.name)
    if not releases:
        return dg.SkipReason("no release partitions yet (release_sensor adds them)")
    week = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            run_key=f"weekly:{week}:{name}",
            partition_key=name,
            tags={"l1000/release": name, "l1000/trigger": "weekly_refresh"},
        )
        for name in releases
    ]
