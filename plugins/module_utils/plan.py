# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plans as plain data: read state once, decide, then apply.

A backend's planner returns a ``Plan``: an ordered list of ``Step``s saying what
would change on which object and why. Check mode returns the plan without applying
it; ``--diff`` renders ``before``/``after``. A ``Refusal`` stops a whole plan before
anything runs and says what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


class Refusal(Exception):
    """Input or state that the collection will not act on; nothing was changed."""

    def __init__(self, message, obj=None):
        self.obj = obj
        super().__init__(message)


class PartialApply(Exception):
    """Applying a multi-object plan stopped at one object.

    ``error`` is the original exception; ``done`` names the objects fully converged
    before it, so the user knows exactly what changed.
    """

    def __init__(self, error, done):
        self.error = error
        self.done = list(done)
        msg = str(error)
        if self.done:
            msg += " (already converged before this failure: %s)" % ", ".join(self.done)
        super().__init__(msg)


@dataclass(frozen=True)
class Step:
    """One change: ``action`` on ``obj`` because ``reason``; ``argv`` when it is one command."""

    action: str
    obj: str
    reason: str = ""
    argv: Optional[List[str]] = None
    # stdin for the command (key material): never shown, never in as_dict()
    secret: Optional[str] = field(default=None, repr=False, compare=False)

    def as_dict(self):
        d = {"action": self.action, "object": self.obj, "reason": self.reason}
        if self.argv:
            d["command"] = " ".join(self.argv)
        return d


class Plan:
    def __init__(self):
        self.steps = []
        self.warnings = []

    def add(self, action, obj, reason="", argv=None, secret=None):
        step = Step(action, obj, reason, argv, secret)
        self.steps.append(step)
        return step

    def warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def changed(self):
        return bool(self.steps)

    def as_list(self):
        return [s.as_dict() for s in self.steps]


def apply_all(items, apply_one, name_of):
    """Apply each item's plan in order. A failure stops there and raises PartialApply naming
    the items fully converged before it (``name_of(item)``), so the user knows what changed."""
    done = []
    for item in items:
        try:
            apply_one(item)
        except Exception as exc:
            raise PartialApply(exc, done) from exc
        done.append(name_of(item))


def refuse_duplicates(values, what):
    """A Refusal naming the values declared more than once (None/empty values are ignored):
    two items converging the same object would fight each other."""
    values = [v for v in values if v]
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise Refusal("the same %s is declared more than once: %s" % (what, ", ".join(dupes)))
