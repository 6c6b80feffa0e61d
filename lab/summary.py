"""Print per-phase timings and one closing line over all phases: "total: N passed, N failed".

Tests come from the phases' JUnit files; a phase without one (install, build, or a phase that
died before writing it) counts as one check. Exits 1 if anything failed.
"""
import os
import sys
import xml.etree.ElementTree as ET


def junit_counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    passed = failed = skipped = 0
    for s in suites:
        tests = int(s.get("tests", 0))
        bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
        skip = int(s.get("skipped", 0))
        passed += tests - bad - skip
        failed += bad
        skipped += skip
    return passed, failed, skipped


def main(results):
    total = [0, 0, 0]
    print("\n%-12s %6s %8s %8s  %s" % ("phase", "status", "seconds", "budget", "tests"))
    with open(os.path.join(results, "phases.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    for name, rc, took, budget in rows:
        junit = os.path.join(results, name + ".xml")
        if name == "sanity":
            junit = None  # ansible-test's own junit is per test; its exit status is the verdict
        if junit and os.path.exists(junit):
            p, f_, s = junit_counts(junit)
            if rc != "0" and f_ == 0:
                f_ = 1  # the runner failed outside any test (collection error, VM died)
        else:
            p, f_, s = (1, 0, 0) if rc == "0" else (0, 1, 0)
        total = [total[0] + p, total[1] + f_, total[2] + s]
        over = " OVER" if int(took) > int(budget) else ""
        print("%-12s %6s %8s %8s  %d passed, %d failed, %d skipped%s"
              % (name, "ok" if rc == "0" else "FAIL", took, budget, p, f_, s, over))
    line = "total: %d passed, %d failed" % (total[0], total[1])
    if total[2]:
        line += ", %d skipped" % total[2]
    print(line)
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
