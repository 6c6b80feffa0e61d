# blindvault.storage — the two commands of the README are `make test` and `make demo`.
# Everything installs itself (apt, PyPI) and skips what is already there.
SHELL := /bin/bash
.DEFAULT_GOAL := help
LAB := lab

.PHONY: help test test-full demo docs lab install unit sanity build integration faults fixtures bench clean

help:
	@echo "make test           install, unit, sanity, build, then the integration suite in the lab VM"
	@echo "make demo           install, then the sneakernet demo (playbooks/demo.yml) inside the lab VM"
	@echo "make lab CMD='...'  run CMD inside the lab VM (from the repository root), exit with its status"
	@echo "make test-full      make test plus the full matrix (every Molecule scenario, the slow cases)"
	@echo "make unit|sanity|build|integration   one phase of make test; make faults: the power cut"
	@echo "make docs           regenerate docs/modules, docs/roles and docs/reference.md from the collection's docs"
	@echo "make fixtures       re-record tests/unit/fixtures from the real tools inside the VM"
	@echo "make bench [N=10] [PEER_N=20] [MB=100]  zfs_dataset vs community.general.zfs vs bare zfs; zfs_replicate vs bare send|recv vs syncoid; zfs_stream vs send|age; integrity wipe full/zero/none (one VM boot)"

test:
	@$(LAB)/test.sh

test-full:
	@BV_FULL=1 $(LAB)/test.sh

docs:
	@source $(LAB)/env.sh && export ANSIBLE_COLLECTIONS_PATH=$$(bv_link_collection) PATH="$$BV_VENV/bin:$$PATH" && \
	  "$$BV_VENV/bin/python" $(LAB)/docs.py

unit sanity build integration faults:
	@BV_PHASES="install $@" $(LAB)/test.sh

install:
	@$(LAB)/install.sh all

# CMD reaches the VM verbatim (quotes, $, parentheses): through the environment, unexpanded.
export BV_LAB_CMD = $(value CMD)
lab:
	@$(LAB)/vm.sh "$$BV_LAB_CMD"

demo:
	@$(LAB)/vm.sh 'time ansible-playbook -i playbooks/demo/inventory.yml playbooks/demo.yml'

fixtures:
	@$(LAB)/vm.sh 'bash lab/record-fixtures.sh tests/unit/fixtures'

bench:
	@$(LAB)/install.sh bench && $(LAB)/vm.sh 'bash bench/zfs_dataset_vs_community.sh $(or $(N),10) $(PEER_N) && \
	  bash bench/zfs_replicate_vs_syncoid.sh $(or $(MB),100) && bash bench/zfs_stream_vs_age.sh $(or $(MB),100) && \
	  bash bench/integrity_wipe.sh 256'

clean:
	@source $(LAB)/env.sh && rm -rf "$$BV_WORK" && echo "removed $$BV_WORK"
