"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

In relay mode several replicas run for availability, but only one may read
Relay and export, or every flow would be counted once per replica. Candidates
race to hold one Lease; the holder renews it every retry period and gives up
(on_stopped_leading) when it could not renew within the renew deadline, which is
shorter than the lease duration, so it stops before anyone else may take over.

Clocks are not compared across pods: like client-go, a candidate measures a
lease's age from when *it* last saw the record change (resourceVersion), so
clock skew between nodes cannot make two leaders. Writes carry the
resourceVersion they were based on; the API server answers 409 to a stale one,
which simply means someone else wrote first.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from hubble_bridge.errors import ConfigError

log = logging.getLogger("hubble_bridge.k8s.leader")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JITTER = 1.2  # client-go's JitterFactor: candidates retry at retry_period * [1, 1 + JITTER)


@dataclass
class LeaderElectionConfig:
    enabled: bool = False
    lease_name: str = "hubble-otlp"
    namespace: str = ""  # "" -> $POD_NAMESPACE, else the service account's namespace
    lease_duration_s: float = 15.0  # how long a lease is good for after its last observed renewal
    renew_deadline_s: float = 10.0  # the leader gives up when it could not renew for this long
    retry_period_s: float = 2.0  # between attempts to acquire or renew
    identity: str = ""  # "" -> $POD_NAME, else the host name (a pod's host name is its name)

    def validate(self) -> None:
        """Raise ConfigError naming every problem; no side effects."""
        problems: list[str] = []
        if not self.lease_name:
            problems.append("lease_name must not be empty")
        if self.lease_duration_s < 1:
            problems.append("lease_duration_s must be at least 1 (Lease durations are whole seconds)")
        if self.retry_period_s <= 0:
            problems.append("retry_period_s must be positive")
        if self.lease_duration_s <= self.renew_deadline_s:
            problems.append("lease_duration_s must be greater than renew_deadline_s")
        if self.renew_deadline_s <= JITTER * self.retry_period_s:
            problems.append(f"renew_deadline_s must be greater than {JITTER} x retry_period_s")
        if problems:
            raise ConfigError("invalid leader_election configuration: " + "; ".join(problems))

    def resolved(self, environ: dict[str, str] | None = None) -> LeaderElectionConfig:
        """A copy with namespace and identity filled in from the pod's environment."""
        env = os.environ if environ is None else environ
        namespace = self.namespace or env.get("POD_NAMESPACE", "")
        if not namespace and SERVICE_ACCOUNT_NAMESPACE.is_file():
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        if not namespace:
            raise ConfigError("leader_election: no namespace; set leader_election.namespace or POD_NAMESPACE")
        identity = self.identity or env.get("POD_NAME", "") or socket.gethostname()
        return replace(self, namespace=namespace, identity=identity)


class _Attempt(Enum):
    HELD = "held"  # we hold the lease now
    TAKEN = "taken"  # someone else holds a lease that has not expired
    FAILED = "failed"  # conflict or API error: try again


class LeaderElector:
    """Campaigns for one Lease; `run` blocks until leadership is lost or `stop` is called.

    on_started_leading runs in its own thread (it may block); on_stopped_leading runs
    on the caller's thread when leadership ends, and only if it had started.
    """

    def __init__(self, config: LeaderElectionConfig, api_client: Any = None) -> None:
        config.validate()
        self.config = config.resolved()
        self._api_client = api_client
        self._api: Any = None
        self._stop = threading.Event()
        self._leader = threading.Event()
        self._lease: Any = None  # the last lease we wrote or read
        self._observed_version = ""
        self._observed_at = 0.0  # monotonic time we last saw the lease record change
        self._last_problem = ""
        self._timeout = max(1.0, self.config.renew_deadline_s / 2)

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def stop(self) -> None:
        """Ask `run` to release the lease and return; safe from any thread, before run and twice."""
        self._stop.set()

    def run(self, on_started_leading: Callable[[], None], on_stopped_leading: Callable[[], None]) -> None:
        self._api = self._api or _coordination_api(self._api_client)
        cfg = self.config
        where = f"lease {cfg.namespace}/{cfg.lease_name}"
        log.info("leader election: %s campaigning for %s", cfg.identity, where)
        while self._attempt() is not _Attempt.HELD:
            if self._stop.wait(cfg.retry_period_s * (1 + random.random() * JITTER)):
                return
        self._leader.set()
        log.info("leader election: %s became the leader (%s)", cfg.identity, where)
        threading.Thread(target=on_started_leading, name="leader-elected", daemon=True).start()
        last_renewal = time.monotonic()
        try:
            while not self._stop.wait(cfg.retry_period_s):
                result = self._attempt()
                if result is _Attempt.HELD:
                    last_renewal = time.monotonic()
                elif result is _Attempt.TAKEN:
                    log.warning("leader election: %s was taken over by another holder", where)
                    return
                elif time.monotonic() - last_renewal >= cfg.renew_deadline_s:
                    log.warning(
                        "leader election: could not renew %s for %.1fs; stepping down",
                        where,
                        cfg.renew_deadline_s,
                    )
                    return
            self._release()
        finally:
            self._leader.clear()
            on_stopped_leading()

    # ---- one round against the API server --------------------------------------------------

    def _attempt(self) -> _Attempt:
        from kubernetes.client.exceptions import ApiException

        cfg = self.config
        try:
            if self.is_leader and self._lease is not None:
                # Renewal: write straight on top of what we wrote last; a 409 means it changed.
                try:
                    return self._write(self._lease, taking_over=False)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            try:
                lease = self._api.read_namespaced_lease(
                    cfg.lease_name, cfg.namespace, _request_timeout=self._timeout
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return self._create()
            self._observe(lease)
            holder = (lease.spec.holder_identity if lease.spec else None) or ""
            if holder and holder != cfg.identity and not self._expired(lease):
                return _Attempt.TAKEN
            return self._write(lease, taking_over=holder != cfg.identity)
        except ApiException as exc:
            if exc.status == 409:
                return _Attempt.FAILED  # someone wrote first; the next round sees what they wrote
            self._problem(f"{exc.status} {exc.reason}" + _hint(exc.status))
        except Exception as exc:  # connection errors come from urllib3, ssl and OSError alike
            self._problem(f"{type(exc).__name__}: {exc}")
        return _Attempt.FAILED

    def _create(self) -> _Attempt:
        now = _now()
        body = self._body(None, holder_identity=self.config.identity, acquire_time=now, lease_transitions=0)
        created = self._api.create_namespaced_lease(
            self.config.namespace, body, _request_timeout=self._timeout
        )
        self._observe(created)
        self._lease = created
        return _Attempt.HELD

    def _write(self, lease: Any, taking_over: bool) -> _Attempt:
        cfg = self.config
        old = lease.spec
        old_holder = old.holder_identity if old else None
        old_acquired = old.acquire_time if old else None
        transitions = (old.lease_transitions or 0) if old else 0
        body = self._body(
            lease.metadata.resource_version,
            holder_identity=cfg.identity,
            acquire_time=_now() if taking_over or old_acquired is None else old_acquired,
            lease_transitions=transitions + (1 if taking_over and old_holder else 0),
        )
        written = self._api.replace_namespaced_lease(
            cfg.lease_name, cfg.namespace, body, _request_timeout=self._timeout
        )
        self._observe(written)
        self._lease = written
        if self._last_problem:
            log.info("leader election: the API server answers again")
            self._last_problem = ""
        return _Attempt.HELD

    def _release(self) -> None:
        """Hand the lease back (no holder, 1s duration) so a standby takes over without waiting."""
        from kubernetes.client.exceptions import ApiException

        if self._lease is None:
            return
        cfg = self.config
        spec = self._lease.spec
        body = self._body(
            self._lease.metadata.resource_version,
            lease_duration_seconds=1,
            acquire_time=_now(),
            lease_transitions=(spec.lease_transitions or 0) if spec else 0,
        )
        try:
            self._api.replace_namespaced_lease(
                cfg.lease_name, cfg.namespace, body, _request_timeout=self._timeout
            )
            log.info("leader election: released lease %s/%s", cfg.namespace, cfg.lease_name)
        except (ApiException, OSError) as exc:
            log.warning("leader election: could not release lease: %s", getattr(exc, "reason", exc))
        self._lease = None

    def _body(self, resource_version: str | None, **spec: Any) -> Any:
        from kubernetes import client

        cfg = self.config
        spec.setdefault("lease_duration_seconds", math.ceil(cfg.lease_duration_s))
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=cfg.lease_name, namespace=cfg.namespace, resource_version=resource_version
            ),
            spec=client.V1LeaseSpec(renew_time=_now(), **spec),
        )

    def _observe(self, lease: Any) -> None:
        version = lease.metadata.resource_version or ""
        if version != self._observed_version:
            self._observed_version = version
            self._observed_at = time.monotonic()

    def _expired(self, lease: Any) -> bool:
        duration = (lease.spec.lease_duration_seconds if lease.spec else None) or self.config.lease_duration_s
        return time.monotonic() >= self._observed_at + duration

    def _problem(self, text: str) -> None:
        # Logged once per distinct problem: a standby retries every few seconds for as long as it runs.
        if text != self._last_problem:
            cfg = self.config
            log.warning("leader election: lease %s/%s: %s", cfg.namespace, cfg.lease_name, text)
            self._last_problem = text


def _now() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    # The API server parses MicroTime with a fixed 6-digit fraction, and isoformat() omits a zero one.
    return now.replace(microsecond=1) if now.microsecond == 0 else now


def _hint(status: int | None) -> str:
    if status in (401, 403):
        return " (the service account needs get, create and update on leases in coordination.k8s.io)"
    return ""


def _coordination_api(api_client: Any) -> Any:
    from kubernetes import client
    from kubernetes import config as kube_config

    if api_client is None:
        configuration = client.Configuration()
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException:
            try:
                kube_config.load_kube_config(client_configuration=configuration)
            except (kube_config.ConfigException, OSError) as exc:
                raise ConfigError(f"leader election: not in a pod and no usable kubeconfig ({exc})") from None
        configuration.retries = 0  # the election loop retries on its own schedule
        api_client = client.ApiClient(configuration)
    return client.CoordinationV1Api(api_client)
