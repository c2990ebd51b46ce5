"""apscheduler wiring: the sweeper's periodic tick. The only module that imports apscheduler."""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from batch.sweeper import Sweeper

JOB_ID = "sweeper_tick"


def start_scheduler(sweeper: Sweeper, interval_seconds: float) -> AsyncIOScheduler:
    """Start a scheduler on the running event loop that ticks ``sweeper`` every interval.

    Must be called from a coroutine (the scheduler binds to the current loop). A tick that runs
    late or long is not stacked: one instance at a time, missed runs coalesce into one.
    """
    scheduler = AsyncIOScheduler()
    scheduler.add_job(sweeper.tick, "interval", seconds=interval_seconds, id=JOB_ID,
                      max_instances=1, coalesce=True, misfire_grace_time=None)
    scheduler.start()
    return scheduler


def stop_scheduler(scheduler: AsyncIOScheduler) -> None:
    """Stop the periodic ticks; a tick already running finishes on its own.

    apscheduler applies the shutdown on the event loop's next iteration.
    """
    if scheduler.running:
        scheduler.shutdown(wait=False)
