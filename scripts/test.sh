#!/usr/bin/env bash
# The test command (README): lint, build, then every test. Root integration
# tests make their own network namespaces and daemons and remove them.
# Under CI=true a test that lacks root or a tool fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
export GRPCURL=${GRPCURL:-/opt/lanes-venv/bin/grpcurl}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The integration tests exec the shim binary, so build every binary first.
cargo build --workspace
cargo test --workspace -- --test-threads=2
