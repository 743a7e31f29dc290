#!/usr/bin/env bash
# The project's test command (the README's second line, and what CI runs):
# installs Ceph and iproute2 if needed (scripts/s3/install.sh,
# scripts/netns/install.sh), starts the throw-away S3
# gateway the tests of ferrite-remote run against (scripts/s3/up.sh), runs
#     cargo test --workspace ARGS...
# with its AWS_* variables, and stops the gateway whatever the outcome.
# Prints how long each step took on stderr; exits with the tests' status.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
say() { echo "test: $*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now)
"$here/s3/install.sh"
# The migration tests' machines are network namespaces (crates/cli/tests/netns.rs).
"$here/netns/install.sh"
say "S3 gateway and network packages: $(took "$t") s"

env_file=$(mktemp "${TMPDIR:-/tmp}/ferrite-s3-env.XXXXXX")
cluster=
stop() {
    if [ -n "$cluster" ]; then "$here/s3/down.sh" "$cluster" || true; fi
    rm -f -- "$env_file"
}
trap stop EXIT

t=$(now)
"$here/s3/up.sh" >"$env_file"
cluster=$(sed -n 's/^FERRITE_S3_DIR=//p' "$env_file")
say "S3 gateway started: $(took "$t") s"

set -a
# shellcheck disable=SC1090
. "$env_file"
set +a

t=$(now)
status=0
(cd "$root" && cargo test --workspace "$@") || status=$?
say "tests: $(took "$t") s (exit $status)"
exit "$status"
