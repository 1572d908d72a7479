"""Two real bridge processes with leader election: only the Lease holder exports; a standby takes over.

No real Kubernetes API server can run here, so the Lease API is the STAND-IN server of
tests/test_leader_election.py (the Lease endpoints with resourceVersion conflicts), reached
through a kubeconfig, exactly as the bridge reaches a real one outside a pod.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import SHARED_FLOWS
from tests.otlp_receiver import OtlpReceiver, attrs
from tests.procs import CliProcess
from tests.test_leader_election import LEASE, NAMESPACE, StandInApiServer

LEASE_DURATION_S = 2.0


def exporters(receiver: OtlpReceiver) -> set[str]:
    """service.instance.id of every bridge whose metrics reached the receiver."""
    return {
        attrs(rm.resource.attributes).get("service.instance.id", "")
        for r in receiver.requests("metrics")
        for rm in r.request.resource_metrics
    }


def test_only_the_leader_exports_and_a_standby_takes_over(tmp_path: Path) -> None:
    with StandInApiServer() as api, OtlpReceiver() as receiver:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: stand-in\n"
            f"clusters:\n- name: stand-in\n  cluster:\n    server: {api.url}\n"
            "contexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: u\n"
            "users:\n- name: u\n  user:\n    token: not-a-secret\n"
        )
        config = tmp_path / "bridge.yaml"
        config.write_text(
            f"leader_election:\n  enabled: true\n  lease_name: {LEASE}\n  namespace: {NAMESPACE}\n"
            f"  lease_duration_s: {LEASE_DURATION_S}\n  renew_deadline_s: 1.5\n  retry_period_s: 0.25\n"
        )
        relay = CliProcess(
            "replay", str(SHARED_FLOWS / "gke-istio-http-348.jsonl"), "--listen", "127.0.0.1:0",
            "--rate", "200", "--loop",
        )  # fmt: skip
        address = relay.wait_for_line(r"on (127\.0\.0\.1:\d+)").group(1)

        def bridge(name: str) -> CliProcess:
            return CliProcess(
                "bridge", "--relay", address, "--config", str(config),
                "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-insecure",
                env={"KUBECONFIG": str(kubeconfig), "POD_NAME": name, "OTEL_METRIC_EXPORT_INTERVAL": "200",
                     "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={name}"},
            )  # fmt: skip

        a, b = bridge("bridge-a"), bridge("bridge-b")
        try:
            a.wait_for_line("standing by for the leader lease")
            b.wait_for_line("standing by for the leader lease")
            assert receiver.wait_for(lambda: exporters(receiver) != set(), timeout=30)
            leader_name = api.holder()
            assert exporters(receiver) == {leader_name}  # only the Lease holder exports
            leader, standby = (a, b) if leader_name == "bridge-a" else (b, a)
            standby_name = "bridge-b" if leader is a else "bridge-a"
            assert "bridging flows" not in standby.output  # the standby does not even read Relay

            leader.stop(signal.SIGKILL)
            # The standby takes the Lease once it expires, starts reading and exports.
            assert receiver.wait_for(lambda: standby_name in exporters(receiver), timeout=30), standby.output
            assert api.holder() == standby_name
            standby.wait_for_line("bridging flows")
            assert standby.stop() == 0, standby.output  # SIGTERM: flush, release the Lease, exit 0
            assert api.holder() == ""  # released, so a new leader need not wait for expiry
        finally:
            for proc in (a, b, relay):
                proc.stop(signal.SIGKILL)
