#!/usr/bin/env bash
# hubble-otlp on a local kind cluster: Cilium with Hubble and Relay, a sample app that makes HTTP,
# DNS and denied traffic, an OpenTelemetry Collector, and the hubble-otlp chart pointed at it.
#
#   scripts/kind-demo.sh [up]   create (or reuse) the cluster and install everything
#   scripts/kind-demo.sh down   delete the cluster
#
# Needs docker, kind, kubectl and helm on PATH, and network access for the Cilium chart and images.
# Environment: CLUSTER (default hubble-otlp), CILIUM_VERSION (default 1.17.2), MODE (relay or node).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-hubble-otlp}"
CILIUM_VERSION="${CILIUM_VERSION:-1.17.2}"
MODE="${MODE:-relay}"
IMAGE="hubble-otlp:dev"
NAMESPACE="hubble-otlp"
CONTEXT="kind-${CLUSTER}"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'kind-demo: %s\n' "$*" >&2; exit 1; }

need_tools() {
  local tool missing=()
  for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (install them, then run again)"
  docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (docker info failed)"
}

k() { kubectl --context "$CONTEXT" "$@"; }

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "reusing kind cluster $CLUSTER"
  else
    say "creating kind cluster $CLUSTER (no default CNI)"
    kind create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml --wait 0s
  fi
}

install_cilium() {
  say "installing Cilium $CILIUM_VERSION with Hubble and Hubble Relay"
  helm repo add cilium https://helm.cilium.io >/dev/null 2>&1 || true
  helm repo update cilium >/dev/null
  helm --kube-context "$CONTEXT" upgrade --install cilium cilium/cilium \
    --version "$CILIUM_VERSION" --namespace kube-system \
    --values deploy/kind/cilium-values.yaml --wait --timeout 10m
  k -n kube-system rollout status deployment/hubble-relay --timeout=5m
}

load_image() {
  say "building $IMAGE and loading it into the cluster"
  docker build --target bridge -t "$IMAGE" .
  kind load docker-image "$IMAGE" --name "$CLUSTER"
}

install_collector_and_app() {
  say "deploying an OpenTelemetry Collector and the sample app"
  k apply -f deploy/kind/otel-collector.yaml
  k apply -f deploy/kind/demo-app.yaml
  k -n opentelemetry rollout status deployment/opentelemetry-collector --timeout=5m
  k -n demo rollout status deployment/echo deployment/vault deployment/client --timeout=5m
}

install_chart() {
  say "installing the hubble-otlp chart (mode $MODE)"
  helm --kube-context "$CONTEXT" upgrade --install hubble-otlp helm/hubble-otlp \
    --namespace "$NAMESPACE" --create-namespace \
    --set mode="$MODE" \
    --set image.repository=hubble-otlp --set image.tag=dev --set image.pullPolicy=Never \
    --set clusterName="$CLUSTER" \
    --wait --timeout 5m
}

show() {
  local leader=""
  if [[ "$MODE" == relay ]]; then
    leader="$(k -n "$NAMESPACE" get lease hubble-otlp -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
    say "exporting replica (Lease holder): ${leader:-none yet}"
  fi
  say "what reaches the Collector (spans and logs; metrics on its :8889)"
  k -n opentelemetry logs deployment/opentelemetry-collector --since=2m | tail -n 20 || true
  cat <<EOF

Next:
  kubectl --context $CONTEXT -n opentelemetry logs -f deployment/opentelemetry-collector
  kubectl --context $CONTEXT -n opentelemetry port-forward svc/opentelemetry-collector 8889 &
  curl -s localhost:8889/metrics | grep -E '^hubble_(drop|http_requests|policy_verdicts)_total' | head
  kubectl --context $CONTEXT -n $NAMESPACE delete pod ${leader:-<leader>}   # a standby takes over
  scripts/kind-demo.sh down
EOF
}

case "${1:-up}" in
  up)
    need_tools
    create_cluster
    install_cilium
    load_image
    install_collector_and_app
    install_chart
    show
    ;;
  down)
    command -v kind >/dev/null 2>&1 || die "kind is not installed"
    kind delete cluster --name "$CLUSTER"
    ;;
  *)
    die "usage: $0 [up|down]"
    ;;
esac
