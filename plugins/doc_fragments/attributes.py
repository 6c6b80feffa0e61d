# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Shared attribute descriptions; each module states its own support level.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description:
      - Can run in C(check_mode). It reads the real state, computes the plan and returns it
        (C(actions)) without changing anything.
  diff_mode:
    description:
      - Returns C(before)/C(after) views of every managed object when run with C(--diff).
"""

    # Support levels shared by most modules (a module with other levels states its own).
    CHECK_DIFF = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

    CHECK_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

    PLATFORM = r"""
options: {}
attributes:
  platform:
    description: Target operating system.
    support: full
    platforms: linux
"""
