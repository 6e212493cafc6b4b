#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each. The seed
# corpora live in each package's testdata/fuzz; crashers found are written
# there too and become regression tests of the plain `go test` run.
set -euo pipefail
fuzztime="${1:-20s}"
status=0
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "== $pkg $target ($fuzztime)"
		if ! go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime"; then
			status=1
		fi
	done
done
exit $status
