"""Leader election on a coordination.k8s.io/v1 Lease, against a STAND-IN Kubernetes API server.

No real API server can run here (no kube-apiserver or etcd binaries, and no network to fetch
them), so these tests start a small HTTP server of their own that serves exactly the Lease
endpoints the elector uses - GET, POST and PUT under
/apis/coordination.k8s.io/v1/namespaces/{ns}/leases - with the API server's optimistic
concurrency: every write bumps metadata.resourceVersion, a PUT based on a stale one gets
409 Conflict and a POST for an existing Lease 409 AlreadyExists. The electors talk to it
through the real `kubernetes` client, so requests and responses have the real wire shape.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from hubble_bridge.errors import ConfigError
from hubble_bridge.k8s.leader import LeaderElectionConfig, LeaderElector

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "monitoring"
LEASE = "hubble-otlp"
PREFIX = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
WAIT_S = 20.0  # upper bound for waits on a loaded machine; none of them is a timing assertion


@dataclass
class Event:
    method: str
    agent: str  # the client's User-Agent: each elector sets it to its identity
    status: int
    holder: str  # holderIdentity after the request
    at: float  # time.monotonic() when the server answered


class StandInApiServer:
    """The Lease part of a Kubernetes API server, with resourceVersion conflicts."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 100
        self.events: list[Event] = []
        self.fail_with: int | None = None  # answer every request with this status
        self.conflict_next_put = False
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StandInApiServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def holder(self) -> str:
        with self.lock:
            lease = self.leases.get(LEASE)
            return (lease or {}).get("spec", {}).get("holderIdentity", "")

    def take_over(self, holder: str) -> None:
        """Another writer grabs the lease behind the elector's back."""
        with self.lock:
            lease = self.leases[LEASE]
            lease["spec"]["holderIdentity"] = holder
            lease["spec"]["leaseDurationSeconds"] = 60
            self._bump(lease)

    def wait_until(self, condition: Callable[[], Any], what: str) -> Any:
        """Block until condition() (evaluated under the lock) is truthy; returns its value."""
        deadline = time.monotonic() + WAIT_S
        with self.lock:
            while not (result := condition()):
                left = deadline - time.monotonic()
                assert left > 0, f"stand-in API server never saw {what}: {self.events[-5:]}"
                self.lock.wait(left)
            return result

    def wait_for(self, predicate: Callable[[Event], bool], what: str) -> Event:
        return self.wait_until(lambda: next((e for e in self.events if predicate(e)), None), what)

    def _bump(self, lease: dict[str, Any]) -> None:
        self.version += 1
        lease["metadata"]["resourceVersion"] = str(self.version)

    def handle(self, method: str, path: str, agent: str, body: dict[str, Any] | None) -> tuple[int, dict]:
        with self.lock:
            status, payload = self._route(method, path, body)
            holder = (self.leases.get(LEASE) or {}).get("spec", {}).get("holderIdentity", "")
            self.events.append(Event(method, agent, status, holder, time.monotonic()))
            self.lock.notify_all()
            return status, payload

    def _route(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict]:
        if self.fail_with:
            return self.fail_with, _status(self.fail_with, "InternalError")
        name = path[len(PREFIX) + 1 :] if path.startswith(PREFIX + "/") else ""
        if method == "GET" and name:
            lease = self.leases.get(name)
            return (200, lease) if lease else (404, _status(404, "NotFound"))
        if method == "POST" and path == PREFIX and body:
            name = body["metadata"]["name"]
            if name in self.leases:
                return 409, _status(409, "AlreadyExists")
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body}
            lease["metadata"] = {**body["metadata"], "namespace": NAMESPACE, "uid": f"uid-{name}"}
            self._bump(lease)
            self.leases[name] = lease
            return 201, lease
        if method == "PUT" and name and body:
            current = self.leases.get(name)
            if current is None:
                return 404, _status(404, "NotFound")
            stale = body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]
            if stale or self.conflict_next_put:
                self.conflict_next_put = False
                return 409, _status(409, "Conflict")
            current["spec"] = body.get("spec", {})
            self._bump(current)
            return 200, current
        return 405, _status(405, "MethodNotAllowed")


def _status(code: int, reason: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}


class _Handler(BaseHTTPRequestHandler):
    api: StandInApiServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?", 1)[0]
        status, payload = self.api.handle(self.command, path, self.headers.get("User-Agent", ""), body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, *_args: object) -> None:
        pass


def api_client(url: str, identity: str) -> client.ApiClient:
    configuration = client.Configuration(host=url)
    configuration.retries = 0
    api = client.ApiClient(configuration)
    api.user_agent = identity
    return api


def fast_config(identity: str, **changes: Any) -> LeaderElectionConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "lease_name": LEASE,
        "namespace": NAMESPACE,
        "lease_duration_s": 2.0,
        "renew_deadline_s": 1.5,
        "retry_period_s": 0.25,
        "identity": identity,
    }
    values.update(changes)
    return LeaderElectionConfig(**values)


# A bridge stand-in: campaigns, says "leading" when elected, exits 1 on losing the lease
# (what the bridge does so Kubernetes restarts it as a standby) and 0 after SIGTERM.
CANDIDATE = """
import signal, sys
from kubernetes import client
from hubble_bridge.k8s.leader import LeaderElectionConfig, LeaderElector
url, identity, lease, namespace = sys.argv[1:5]
configuration = client.Configuration(host=url)
configuration.retries = 0
api = client.ApiClient(configuration)
api.user_agent = identity
elector = LeaderElector(LeaderElectionConfig(
    enabled=True, lease_name=lease, namespace=namespace, lease_duration_s=2, renew_deadline_s=1.5,
    retry_period_s=0.25, identity=identity), api)
terminated = []
signal.signal(signal.SIGTERM, lambda *_: (terminated.append(1), elector.stop()))
print("campaigning", flush=True)
elector.run(lambda: print("leading", flush=True), lambda: print("stopped leading", flush=True))
sys.exit(0 if terminated else 1)
"""


class Candidate:
    def __init__(self, url: str, identity: str) -> None:
        self.identity = identity
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CANDIDATE, url, identity, LEASE, NAMESPACE],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, line: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{self.identity} never printed {line!r}; printed {self.seen}"
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                continue

    def printed(self, line: str) -> bool:
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return line in self.seen

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def server() -> Iterator[StandInApiServer]:
    with StandInApiServer() as api:
        yield api


def test_two_processes_one_leads_and_the_other_takes_over_when_the_leader_is_killed(
    server: StandInApiServer,
) -> None:
    a, b = Candidate(server.url, "bridge-a"), Candidate(server.url, "bridge-b")
    try:
        server.wait_for(lambda e: e.status in (200, 201) and e.method != "GET" and e.holder, "a first holder")
        leader, standby = (a, b) if server.holder() == "bridge-a" else (b, a)
        leader.expect("leading")
        standby.expect("campaigning")
        # The standby keeps asking and keeps being refused: wait for several of its reads
        # after the leader was elected, then check it never started exporting.
        elected = server.wait_for(lambda e: e.holder == leader.identity, "the leader").at
        server.wait_until(
            lambda: sum(1 for e in server.events if e.agent == standby.identity and e.at > elected) >= 4,
            "four reads by the standby after the election",
        )
        assert not standby.printed("leading")
        assert server.holder() == leader.identity

        leader.kill()  # SIGKILL: no release, the lease has to expire
        with server.lock:
            last_renewal = max(
                e.at
                for e in server.events
                if e.agent == leader.identity and e.method != "GET" and e.status in (200, 201)
            )
        standby.expect("leading", timeout=2.0 + WAIT_S)
        takeover = server.wait_for(
            lambda e: e.agent == standby.identity and e.method == "PUT" and e.holder == standby.identity,
            "the takeover",
        )
        # Safety: the standby waited out a full lease duration after the last renewal it saw.
        assert takeover.at >= last_renewal + 2.0
        assert server.holder() == standby.identity

        standby.proc.send_signal(signal.SIGTERM)
        standby.expect("stopped leading")
        assert standby.proc.wait(timeout=WAIT_S) == 0
        assert server.holder() == ""  # released on stop
    finally:
        a.kill()
        b.kill()


def run_in_thread(elector: LeaderElector) -> tuple[threading.Thread, threading.Event, threading.Event]:
    started, stopped = threading.Event(), threading.Event()
    thread = threading.Thread(target=elector.run, args=(started.set, stopped.set), daemon=True)
    thread.start()
    return thread, started, stopped


def test_conflicting_renewal_is_retried_and_the_leader_keeps_the_lease(server: StandInApiServer) -> None:
    elector = LeaderElector(fast_config("solo"), api_client(server.url, "solo"))
    thread, started, stopped = run_in_thread(elector)
    assert started.wait(WAIT_S)
    with server.lock:
        server.conflict_next_put = True
        seen = len(server.events)
    conflict = server.wait_for(lambda e: e.status == 409, "the injected conflict")
    server.wait_for(lambda e: e.at > conflict.at and e.method == "PUT" and e.status == 200, "a renewal")
    assert elector.is_leader and not stopped.is_set()
    assert len(server.events) > seen
    elector.stop()
    thread.join(WAIT_S)
    assert stopped.is_set() and not elector.is_leader


def test_leader_steps_down_when_another_holder_took_the_lease(server: StandInApiServer) -> None:
    elector = LeaderElector(fast_config("first"), api_client(server.url, "first"))
    thread, started, stopped = run_in_thread(elector)
    assert started.wait(WAIT_S)
    server.take_over("intruder")
    assert stopped.wait(WAIT_S)
    thread.join(WAIT_S)
    assert not thread.is_alive() and not elector.is_leader
    assert server.holder() == "intruder"  # a deposed leader does not release someone else's lease


def test_leader_steps_down_when_it_cannot_renew_within_the_deadline(server: StandInApiServer) -> None:
    elector = LeaderElector(fast_config("lonely"), api_client(server.url, "lonely"))
    thread, started, stopped = run_in_thread(elector)
    assert started.wait(WAIT_S)
    with server.lock:
        server.fail_with = 500
    assert stopped.wait(WAIT_S)
    thread.join(WAIT_S)
    assert not thread.is_alive() and not elector.is_leader


def test_stop_releases_the_lease_so_a_standby_need_not_wait_for_it_to_expire(
    server: StandInApiServer,
) -> None:
    # A 60 s lease: the standby can only lead within the wait below if the lease was handed back.
    slow = {"lease_duration_s": 60.0, "renew_deadline_s": 1.5}
    first = LeaderElector(fast_config("first", **slow), api_client(server.url, "first"))
    thread, started, stopped = run_in_thread(first)
    assert started.wait(WAIT_S)
    second = LeaderElector(fast_config("second", **slow), api_client(server.url, "second"))
    thread2, started2, stopped2 = run_in_thread(second)
    server.wait_for(lambda e: e.agent == "second" and e.method == "GET", "the standby's first read")
    assert not started2.is_set()
    first.stop()
    thread.join(WAIT_S)
    assert stopped.is_set()
    assert started2.wait(WAIT_S)
    assert server.holder() == "second"
    with server.lock:
        assert server.leases[LEASE]["spec"]["leaseTransitions"] == 0  # a released lease is no takeover
    second.stop()
    thread2.join(WAIT_S)
    assert stopped2.is_set()


def test_stop_before_leading_returns_without_callbacks(server: StandInApiServer) -> None:
    server.leases[LEASE] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NAMESPACE, "resourceVersion": "1"},
        "spec": {"holderIdentity": "someone", "leaseDurationSeconds": 60},
    }
    elector = LeaderElector(fast_config("waiting"), api_client(server.url, "waiting"))
    thread, started, stopped = run_in_thread(elector)
    server.wait_for(lambda e: e.agent == "waiting", "a read")
    elector.stop()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert not started.is_set() and not stopped.is_set()
    assert server.holder() == "someone"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lease_duration_s": 10.0, "renew_deadline_s": 10.0}, "greater than renew_deadline_s"),
        ({"renew_deadline_s": 2.0, "retry_period_s": 2.0}, "1.2 x retry_period_s"),
        ({"retry_period_s": 0.0}, "retry_period_s must be positive"),
        ({"lease_name": ""}, "lease_name must not be empty"),
    ],
)
def test_bad_durations_are_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LeaderElectionConfig(enabled=True, namespace="ns", identity="me", **changes).validate()


def test_identity_and_namespace_come_from_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    config = LeaderElectionConfig(enabled=True).resolved(
        {"POD_NAME": "hubble-otlp-7d9-x2", "POD_NAMESPACE": "obs"}
    )
    assert (config.identity, config.namespace) == ("hubble-otlp-7d9-x2", "obs")
    explicit = LeaderElectionConfig(namespace="ns", identity="me").resolved(
        {"POD_NAME": "p", "POD_NAMESPACE": "q"}
    )
    assert (explicit.identity, explicit.namespace) == ("me", "ns")
    monkeypatch.setattr("hubble_bridge.k8s.leader.SERVICE_ACCOUNT_NAMESPACE", Path("/nonexistent/namespace"))
    with pytest.raises(ConfigError, match="no namespace"):
        LeaderElectionConfig().resolved({})
