#!/usr/bin/env bash
# Validates the Kubernetes manifests in examples/kubernetes/ offline (no API server needed):
#   1. built-in kinds (RBAC, ConfigMap, DaemonSet, Pod, and the CRDs themselves, which are
#      apiextensions.k8s.io/v1 objects) with kubernetes-validate --strict: unknown fields (typos)
#      and wrong types are errors;
#   2. every lanes.dev resource has its CRD in examples/kubernetes/crds/ (crdgen output);
#   3. custom resources (lanes.dev objects, the NAD) against their CRD's openAPIV3Schema with
#      scripts/validate_cr.py; a resource without a CRD is a failure, not a skip.
# Ends with one summary line; exit status 1 when anything failed.
#
#   scripts/validate-manifests.sh              validate
#   scripts/validate-manifests.sh --self-test  check that broken manifests are rejected
#
# Needs kubernetes-validate, PyYAML and jsonschema in ${LANES_VENV:-/opt/lanes-venv}
# (scripts/install-deps.sh installs them; this script installs them when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${LANES_VENV:-/opt/lanes-venv}
k8s_dir=examples/kubernetes
crd_dir=$k8s_dir/crds
# -k for kubernetes-validate; empty: its newest bundled version.
k8s_version=${K8S_VERSION:-}

# Built-in kinds only: kubernetes-validate answers an unknown kind (a custom resource) with a WARN
# and exit status 0, even with --strict, so custom resources must never be handed to it.
builtin_files=("$k8s_dir/rbac.yaml" "$k8s_dir/configmap.yaml" "$k8s_dir/daemonset.yaml"
               "$k8s_dir/pod-busybox3.yaml")
# Every lanes.dev resource lanesd reads or writes (rbac.yaml) needs a CRD.
lanes_plurals=(ippools ipamconfigs bgpconfigurations bgppeers ipamblocks nodestates secondaryattachments)

ensure_venv() {
  if [ -x "$venv/bin/kubernetes-validate" ] && "$venv/bin/python" -c 'import yaml, jsonschema' 2>/dev/null; then
    return
  fi
  echo "installing kubernetes-validate, PyYAML and jsonschema into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0 PyYAML==6.0.3 jsonschema==4.26.0
}

# kube_validate FILE...: kubernetes-validate --strict; prints its output; fails on a non-zero exit
# status or on any ERROR or WARN line (a WARN here means a file was not checked at all).
kube_validate() {
  local out rc=0
  local args=(--strict)
  [ -z "$k8s_version" ] || args+=(-k "$k8s_version")
  out=$("$venv/bin/kubernetes-validate" "${args[@]}" "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | sed 's/^/  /'
  [ "$rc" -eq 0 ] && ! grep -qE '^(ERROR|WARN)' <<<"$out"
}

# cr_validate CRD_FILE... -- RESOURCE_FILE...: validate_cr.py; fails on exit status or any SKIP.
cr_validate() {
  local out rc=0
  out=$("$venv/bin/python" scripts/validate_cr.py "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | sed 's/^/  /'
  [ "$rc" -eq 0 ] && ! grep -q '^SKIP' <<<"$out"
}

# missing_crds: prints the lanes.dev plurals and the NAD that have no CRD in $crd_dir.
missing_crds() {
  "$venv/bin/python" - "$crd_dir" "${lanes_plurals[@]}" <<'EOF'
import glob, sys, yaml
crd_dir, plurals = sys.argv[1], sys.argv[2:]
have = set()
for path in sorted(glob.glob(f"{crd_dir}/*.yaml")):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            have.add((doc["spec"]["group"], doc["spec"]["names"]["plural"]))
want = [("lanes.dev", p) for p in plurals] + [("k8s.cni.cncf.io", "network-attachment-definitions")]
print(" ".join(f"{p}.{g}" for g, p in want if (g, p) not in have))
EOF
}

count_docs() {
  "$venv/bin/python" -c 'import sys, yaml; print(sum(1 for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d))' "$@"
}

validate() {
  local failed=() crds=("$crd_dir"/*.yaml) crs missing
  crs=("$k8s_dir"/resources/*.yaml "$k8s_dir/nad-yusur-ovn.yaml")

  echo "== built-in kinds (kubernetes-validate --strict)"
  kube_validate "${builtin_files[@]}" "${crds[@]}" || failed+=("built-in kinds")

  echo "== CRDs in $crd_dir"
  missing=$(missing_crds)
  if [ -n "$missing" ]; then
    echo "  missing CRDs: $missing"
    echo "  the lanes.dev CRDs are generated from the Rust types: run"
    echo "  'cargo run -p lanes-manager --bin crdgen' (writes $crd_dir/lanes.dev_*.yaml), then this script again"
    failed+=("CRDs missing")
  else
    echo "  every lanes.dev resource and the NAD have a CRD"
  fi

  echo "== custom resources against their CRDs (scripts/validate_cr.py)"
  cr_validate "${crds[@]}" -- "${crs[@]}" || failed+=("custom resources")

  local n_builtin n_crd n_cr
  n_builtin=$(count_docs "${builtin_files[@]}")
  n_crd=$(count_docs "${crds[@]}")
  n_cr=$(count_docs "${crs[@]}")
  if [ ${#failed[@]} -eq 0 ]; then
    echo "validate-manifests: PASS: $n_builtin built-in objects and $n_crd CRDs (strict schemas), $n_cr custom resources (their CRDs)"
  else
    local what
    what=$(printf '%s, ' "${failed[@]}")
    echo "validate-manifests: FAIL (${what%, }): $n_builtin built-in objects, $n_crd CRDs, $n_cr custom resources checked"
    return 1
  fi
}

# The negative checks: each broken copy must be rejected, or the validation proves nothing.
self_test() {
  local tmp passed=0 failed=0 skipped=0
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN

  expect_rejected() { # NAME COMMAND...: the command must fail and print ERROR
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] && grep -q ERROR <<<"$out"; then
      echo "  ok: $name rejected: $(grep -m1 ERROR <<<"$out" | sed 's/^ *//' | cut -c1-240)"
      passed=$((passed + 1))
    else
      echo "  FAILED: $name was accepted (exit $rc):"
      printf '%s\n' "$out" | sed 's/^/    /'
      failed=$((failed + 1))
    fi
  }

  echo "== self-test: broken manifests must be rejected"
  sed 's/^\( *\)hostNetwork:/\1hostNetwrok:/' "$k8s_dir/daemonset.yaml" > "$tmp/daemonset-typo.yaml"
  grep -q hostNetwrok "$tmp/daemonset-typo.yaml"
  expect_rejected "DaemonSet with 'hostNetwrok'" kube_validate "$tmp/daemonset-typo.yaml"

  # The NAD CRD is ours, so this one can always run.
  cat > "$tmp/nad-bad.yaml" <<'EOF'
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: bad
  namespace: default
spec:
  config: 42
EOF
  expect_rejected "NAD with spec.config: 42" cr_validate "$crd_dir"/*.yaml -- "$tmp/nad-bad.yaml"

  if [[ " $(missing_crds) " != *" bgppeers.lanes.dev "* ]]; then
    cat > "$tmp/bgppeer-bad.yaml" <<'EOF'
apiVersion: lanes.dev/v1
kind: BGPPeer
metadata:
  name: bad
spec:
  peerIP: 192.168.0.1
  asNumber: "abc"
EOF
    expect_rejected "BGPPeer with asNumber: \"abc\"" cr_validate "$crd_dir"/*.yaml -- "$tmp/bgppeer-bad.yaml"
  else
    echo "  skip: BGPPeer with asNumber: \"abc\": no lanes.dev BGPPeer CRD in $crd_dir yet (crdgen output missing)"
    skipped=$((skipped + 1))
  fi

  if [ "$failed" -eq 0 ]; then
    echo "validate-manifests self-test: PASS: $passed rejected as expected, $skipped skipped"
  else
    echo "validate-manifests self-test: FAIL: $failed accepted that must be rejected, $passed rejected, $skipped skipped"
    return 1
  fi
}

ensure_venv
case "${1:-}" in
  "") validate ;;
  --self-test) self_test ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac
