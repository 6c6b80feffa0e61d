# shellcheck shell=bash
# Sourced by the lab scripts: where things live. Nothing here runs anything.
# State lives outside the checkout (not under /tmp or /var/tmp: the VM has its own there),
# so several clones (CI's fresh clone, a developer's checkout) share the installed venv and images; keyed names let them differ safely.
BV_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BV_HOME=${BV_HOME:-/opt/blindvault-lab}
BV_BASE_PY=${BV_BASE_PY:-$(command -v python3.11 || command -v python3)}
BV_BASE_PY=$("$BV_BASE_PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')
bv_req_hash=$(cat "$BV_TOP/lab/requirements.txt" <(echo "$BV_BASE_PY") | sha256sum | cut -c1-12)
BV_VENV=$BV_HOME/venv-$bv_req_hash
BV_IMAGES=$BV_HOME/images
# Per-checkout scratch (collections symlink, artefacts): keyed by the checkout path.
bv_top_hash=$(printf %s "$BV_TOP" | sha256sum | cut -c1-8)
BV_WORK=$BV_HOME/work-$bv_top_hash
export BV_TOP BV_HOME BV_BASE_PY BV_VENV BV_IMAGES BV_WORK

# The collection by name (ansible_collections/blindvault/storage -> this checkout), for
# ansible and pytest on the host and in the VM. Prints the collections root.
bv_link_collection() {
  local coll=$BV_WORK/collections/ansible_collections/blindvault
  mkdir -p "$coll"
  ln -sfn "$BV_TOP" "$coll/storage"
  echo "$BV_WORK/collections"
}
