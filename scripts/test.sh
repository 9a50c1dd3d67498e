#!/usr/bin/env bash
# The test command (README): lint, build, then every test. Root integration
# tests make their own network namespaces and daemons and remove them.
# Under CI=true a test that lacks root or a tool fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
# Root tests need the daemons and tools; installing is a no-op once done.
if [ "$(id -u)" = 0 ]; then scripts/install-deps.sh; fi
export GRPCURL=${GRPCURL:-/opt/lanes-venv/bin/grpcurl}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The integration tests exec the shim binary, so build every binary first.
cargo build --workspace
# ... and they run the shim as it ships (static, musl), unless LANES_CNI names another.
if [ -z "${LANES_CNI:-}" ]; then LANES_CNI=$(scripts/build-shim.sh); fi
export LANES_CNI
# The committed CRDs are what the Rust types generate; every manifest validates offline.
target/debug/crdgen --check examples/kubernetes/crds
if [ -x "${LANES_VENV:-/opt/lanes-venv}/bin/kubernetes-validate" ]; then
  scripts/validate-manifests.sh
  scripts/validate-manifests.sh --self-test
elif [ "${CI:-}" = true ]; then
  echo "manifest validation: kubernetes-validate missing (scripts/install-deps.sh installs it)" >&2
  exit 1
else
  echo "SKIP manifest validation: no kubernetes-validate (run scripts/install-deps.sh as root)"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace -- --test-threads=2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk -v prefix="${SUMMARY_PREFIX:-}" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%s%d passed, %d failed, %d skipped\n", prefix, p, f, s }' "$log" | tee "${SUMMARY_FILE:-/dev/null}"
exit "$rc"
