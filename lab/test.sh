#!/usr/bin/env bash
# `make test`: every phase, timed, with one summary line at the end.
#   install (apt, venv, images) -> unit (host) -> sanity -> build -> integration (lab VM, every
#   execve traced) -> faults (a power cut: the VM killed mid-send and mid-md-recovery, booted
#   again on the same disk files, the playbooks re-run; tests/faults/)
#   make test-full (BV_FULL=1) adds the full matrix to the integration phase.
# Exits non-zero if any phase failed; the last line is "total: N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/env.sh"
results=$BV_WORK/results
rm -rf "$results"; mkdir -p "$results"
: > "$results/phases.tsv"
phases=${BV_PHASES:-install unit sanity build integration faults}

phase() {  # phase NAME BUDGET_SECONDS CMD...
  local name=$1 budget=$2; shift 2
  local start=$SECONDS rc
  printf '\n===== phase %s (budget %d s) =====\n' "$name" "$budget"
  "$@"
  rc=$?
  local took=$(( SECONDS - start ))
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$took" "$budget" >> "$results/phases.tsv"
  printf '===== phase %s: %s in %d s%s =====\n' "$name" "$([ $rc = 0 ] && echo ok || echo "FAILED rc=$rc")" \
    "$took" "$([ $took -gt "$budget" ] && echo " (OVER BUDGET $budget s)")"
  return 0
}

coll=
do_unit() {
  coll=$(bv_link_collection)
  PYTHONPATH=$coll PYTHONDONTWRITEBYTECODE=1 "$BV_VENV/bin/pytest" -q -p no:cacheprovider \
    --junitxml="$results/unit.xml" "$BV_TOP/tests/unit"
}

do_sanity() {
  # ansible-test needs the collection at .../ansible_collections/blindvault/storage (a real
  # path, not a symlink): copy what git tracks or would track.
  local dst=$BV_WORK/sanity/ansible_collections/blindvault/storage
  rm -rf "$BV_WORK/sanity"; mkdir -p "$dst"
  (cd "$BV_TOP" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dst")
  (cd "$dst" && git init -q && git add -A && \
    "$BV_VENV/bin/ansible-test" sanity --venv --python 3.11 --color no \
      --junit 2>&1 | grep -v 'is ignored: it is neither a file nor a directory')
  local rc=${PIPESTATUS[0]}
  # ansible-lint's production profile over the whole tree (.ansible-lint: offline, no skips)
  (cd "$BV_TOP" && PATH="$BV_VENV/bin:$PATH" ANSIBLE_COLLECTIONS_PATH=$(bv_link_collection) ansible-lint --nocolor) ||
    rc=$(( rc ? rc : 1 ))
  return "$rc"
}

do_build() {
  rm -rf "$BV_WORK/dist"; mkdir -p "$BV_WORK/dist"
  (cd "$BV_TOP" && "$BV_VENV/bin/ansible-galaxy" collection build --force \
     --output-path "$BV_WORK/dist") || return 1
  local tarball
  tarball=$(ls "$BV_WORK"/dist/blindvault-storage-*.tar.gz)
  # The artefact must hold the collection and none of the lab's scratch.
  if tar -tzf "$tarball" | grep -E '^(\.lab|lab/|bench/|\.ci/|\.git/)'; then
    echo "build: lab or CI files leaked into $tarball" >&2; return 1
  fi
  echo "built $tarball ($(du -k "$tarball" | cut -f1) KiB)"
  # The tarball installs offline into a fresh collections path, and everything below sees only
  # that copy (not the checkout's link on PYTHONPATH, ~/.ansible or site-packages).
  local inst=$BV_WORK/dist/installed
  local coll=$inst/ansible_collections/blindvault/storage gen=$BV_WORK/dist/docs
  local -a env=(env -u PYTHONPATH ANSIBLE_COLLECTIONS_PATH="$inst" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
                ANSIBLE_NOCOLOR=1 PATH="$BV_VENV/bin:$PATH")
  (cd "$BV_WORK/dist" && "${env[@]}" ansible-galaxy collection install --offline -p "$inst" "$tarball") ||
    { echo "build: ansible-galaxy collection install --offline $tarball failed" >&2; return 1; }
  local d bad=0
  for d in plugins/modules plugins/module_utils plugins/doc_fragments roles meta/runtime.yml; do
    diff -rq -x __pycache__ -x '*.pyc' "$BV_TOP/$d" "$coll/$d" || bad=1
  done
  [ $bad = 0 ] || { echo "build: the installed $coll does not hold the checkout's modules, module_utils, doc_fragments, roles and meta/runtime.yml (above)" >&2; return 1; }
  # ansible-doc renders every module from the installed copy (it only warns about a missing one).
  local -a mods=()
  local out m
  for m in "$BV_TOP"/plugins/modules/[!_]*.py; do m=${m##*/}; mods+=("${m%.py}"); done
  out=$(cd "$BV_WORK/dist" && "${env[@]}" ansible-doc -t module "${mods[@]/#/blindvault.storage.}") || bad=1
  for m in "${mods[@]}"; do
    grep -qxF "> MODULE blindvault.storage.$m ($coll/plugins/modules/$m.py)" <<<"$out" || bad=1
  done
  [ $bad = 0 ] || { echo "build: ansible-doc -t module did not document all ${#mods[@]} modules from $coll" >&2; return 1; }
  # The docs built from the installed copy are the committed ones.
  (cd "$BV_WORK/dist" && "${env[@]}" python "$BV_TOP/lab/docs.py" --source "$coll" --output "$gen" >/dev/null) ||
    { echo "build: lab/docs.py failed to build the docs from the installed $coll" >&2; return 1; }
  for d in docs/modules docs/roles docs/reference.md CHANGELOG.md; do
    diff -r "$BV_TOP/$d" "$gen/$d" || bad=1
  done
  [ $bad = 0 ] || { echo "build: the docs built from the installed collection ($gen) differ from the committed ones (diff above, committed < > built): run make docs and commit" >&2; return 1; }
  echo "installed $coll: ${#mods[@]} modules documented by ansible-doc; docs built from it equal the committed docs/ and CHANGELOG.md"
}

do_integration() {
  # Every execve of the run (tests, modules, Molecule, every tool) is traced: the suite's last
  # test fails if a key reached any argv (tests/integration/test_secrets.py). --seccomp-bpf:
  # only execve stops the tracee, so the cost is small.
  local trace=$results/execve.log
  "$BV_TOP/lab/vm.sh" "BV_EXEC_TRACE=$trace strace -f --seccomp-bpf -qq -z -e trace=execve -e signal=none -s 65536 -o $trace \
    pytest -q -p no:cacheprovider --durations=15 --junitxml=$results/integration.xml tests/integration"
}

for p in $phases; do
  case $p in
    install) phase install 600 "$BV_TOP/lab/install.sh" all ;;
    unit) phase unit 120 do_unit ;;
    sanity) phase sanity 420 do_sanity ;;
    build) phase build 60 do_build ;;
    integration) phase integration 3000 do_integration ;;
    faults) phase faults 900 "$BV_TOP/tests/faults/powercut.sh" ;;
    *) echo "unknown phase $p" >&2; exit 2 ;;
  esac
done

"$BV_BASE_PY" "$BV_TOP/lab/summary.py" "$results"
