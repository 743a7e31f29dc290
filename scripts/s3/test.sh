#!/usr/bin/env bash
# Runs ferrite-remote's tests, the ignored ones against a real S3 gateway
# included: installs Ceph if needed, starts a throw-away gateway, runs
#     cargo test -p ferrite-remote -- --include-ignored
# with its AWS_* variables, and stops it whatever the outcome. Extra
# arguments go to the test binaries (after --include-ignored). Prints how
# long each step took on stderr; exits with the tests' status.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
say() { echo "s3/test: $*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now)
"$here/install.sh"
say "install: $(took "$t") s"

env_file=$(mktemp "${TMPDIR:-/tmp}/ferrite-s3-env.XXXXXX")
cluster=
stop() {
    [ -n "$cluster" ] && "$here/down.sh" "$cluster" || true
    rm -f -- "$env_file"
}
trap stop EXIT

t=$(now)
"$here/up.sh" >"$env_file"
cluster=$(sed -n 's/^FERRITE_S3_DIR=//p' "$env_file")
say "start: $(took "$t") s"

set -a
# shellcheck disable=SC1090
. "$env_file"
set +a

t=$(now)
status=0
(cd "$root" && cargo test -p ferrite-remote -- --include-ignored "$@") || status=$?
say "tests: $(took "$t") s (exit $status)"
exit "$status"
