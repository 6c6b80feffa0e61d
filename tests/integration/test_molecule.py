"""Every role's Molecule scenario, inside the lab VM, in the suite's one VM boot.

All selected scenarios run in ONE `molecule test` (Molecule's own start-up costs ~35 s in the
VM), started in the background as soon as pytest has collected, so it runs beside the other
test files (molecule_batch.py says why and how to tune it); these tests are ordered last and
each judges one scenario by Molecule's SCENARIO RECAP. Scenarios therefore use names (pools,
dm, md, files) of their own.

Scenarios live in ``extensions/molecule/<name>/`` (Molecule's collection layout, shared
settings in ``extensions/molecule/config.yml``). Each runs its own test sequence (converge,
idempotence, verify; negative scenarios their own) through the real ``molecule`` command
against localhost. A scenario whose molecule.yml has the line ``# blindvault: full-only``
runs only under ``make test-full`` (BV_FULL=1).

When the session ends, everything the scenarios left in the kernel (pools, md arrays, dm
mappings, loop devices) is taken down, top first.
"""

import os

import pytest

import molecule_batch

FULL = os.environ.get("BV_FULL") == "1"


def _params():
    params = []
    for name, full_only in molecule_batch.scenarios():
        marks = [pytest.mark.skip(reason="full-only scenario: make test-full")] if full_only and not FULL else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="session")
def molecule_results(request):
    """The batch's results (recap per scenario, log path, log text); waits for it to end."""
    return request.config.stash[molecule_batch.STASH].results()


@pytest.mark.parametrize("scenario", _params())
def test_molecule_scenario(scenario, molecule_results):
    recap, log_path, text = molecule_results
    got = recap.get(scenario)
    ok = got is not None and got.get("failed", 1) == 0 and got.get("successful", 0) > 0
    if not ok:
        marker = "Failed: %s" % scenario
        at = text.find(marker)
        excerpt = text[at:at + 8000] if at >= 0 else text[-8000:]
        pytest.fail("molecule scenario %s: %s (log %s):\n%s" % (scenario, got or "no result", log_path, excerpt))
