# Lab-only callback (not part of the collection): how long each task took, so a slow Molecule
# scenario or demo names its slow steps. Enabled by lab/guest.sh inside the lab VM.
from __future__ import annotations

import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bv_timer
type: aggregate
short_description: seconds per task and the slowest tasks of each playbook run (lab only)
description:
  - Prints one line per finished task with its wall-clock seconds, and at the end of the run
    the ten slowest tasks.
requirements:
  - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bv_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._start = time.monotonic()
        self._task = None
        self._task_start = None
        self._times = []

    def _close(self):
        if self._task is not None:
            took = time.monotonic() - self._task_start
            self._times.append((took, self._task))
            self._display.display("[bv_timer] %6.1f s  %s" % (took, self._task))
            self._task = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self._task = task.get_name()
        self._task_start = time.monotonic()

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def v2_playbook_on_stats(self, stats):
        self._close()
        total = time.monotonic() - self._start
        self._display.display("[bv_timer] run %.1f s; tasks %.1f s; slowest:" % (total, sum(t for t, _n in self._times)))
        for took, name in sorted(self._times, reverse=True)[:10]:
            self._display.display("[bv_timer] %6.1f s  %s" % (took, name))
