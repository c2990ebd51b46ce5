"""Thread priorities: background work yields the CPU to the SFTP clients waiting for answers.

Linux schedules threads one by one, and ``setpriority(PRIO_PROCESS, 0, n)`` changes the calling
thread only. A thread at niceness 5 gets about a third of a core that a default-priority
process wants too, and all of an idle one; at 10 about a tenth. Lowering is allowed to any
user; elsewhere (other systems, a refused call) it is a no-op.
"""

from __future__ import annotations

import os
from contextlib import suppress

# The daemon's blocking work (recording rows, routing, the pipeline's database writes, HTTP
# handlers' queries): behind the SFTP processes' sessions, ahead of imports.
BACKGROUND_NICENESS = 5
# Imports (hashing, copying, fsync): behind everything else.
IMPORT_NICENESS = 10


def lower_thread_priority(niceness: int) -> None:
    """Set the calling thread's niceness to ``niceness`` (never raises)."""
    with suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
