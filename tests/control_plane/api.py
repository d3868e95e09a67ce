"""A small synchronous REST client for the test cluster: JSON objects in, JSON objects out.

Tests read and write the cluster with it (as an admin, a node, or a ServiceAccount token);
the product itself goes through the official clients and KubeSpawner.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

# plural -> (API prefix, namespaced)
RESOURCES: dict[str, tuple[str, bool]] = {
    "pods": ("/api/v1", True),
    "services": ("/api/v1", True),
    "configmaps": ("/api/v1", True),
    "secrets": ("/api/v1", True),
    "events": ("/api/v1", True),
    "persistentvolumeclaims": ("/api/v1", True),
    "persistentvolumes": ("/api/v1", False),
    "serviceaccounts": ("/api/v1", True),
    "resourcequotas": ("/api/v1", True),
    "limitranges": ("/api/v1", True),
    "nodes": ("/api/v1", False),
    "namespaces": ("/api/v1", False),
    "jobs": ("/apis/batch/v1", True),
    "cronjobs": ("/apis/batch/v1", True),
    "deployments": ("/apis/apps/v1", True),
    "replicasets": ("/apis/apps/v1", True),
    "leases": ("/apis/coordination.k8s.io/v1", True),
    "roles": ("/apis/rbac.authorization.k8s.io/v1", True),
    "rolebindings": ("/apis/rbac.authorization.k8s.io/v1", True),
    "clusterroles": ("/apis/rbac.authorization.k8s.io/v1", False),
    "clusterrolebindings": ("/apis/rbac.authorization.k8s.io/v1", False),
    "runtimeclasses": ("/apis/node.k8s.io/v1", False),
    "deviceclasses": ("/apis/resource.k8s.io/v1", False),
    "resourceslices": ("/apis/resource.k8s.io/v1", False),
    "resourceclaims": ("/apis/resource.k8s.io/v1", True),
}


def resource_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """The URL path of a collection or, with ``name``, of one object (``pods/status`` works)."""
    base, _, sub = plural.partition("/")
    prefix, namespaced = RESOURCES[base]
    path = prefix + (f"/namespaces/{namespace}" if namespaced and namespace else "") + f"/{base}"
    if name:
        path += f"/{name}"
    return path + (f"/{sub}" if sub else "")


class ApiError(Exception):
    """A non-2xx answer: ``code``, ``reason`` and ``message`` come from the Status body."""

    def __init__(self, code: int, body: Any) -> None:
        self.code = code
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = self.body.get("reason", "")
        self.message = self.body.get("message", "")
        super().__init__(f"{code} {self.reason}: {self.message}")


@dataclass
class Credentials:
    """A client certificate, or a bearer token."""

    cert: Path | None = None
    key: Path | None = None
    token: str | None = None


class KubeClient:
    """Talks to one API server as one identity."""

    def __init__(self, url: str, ca: Path, credentials: Credentials) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        # REQUESTS_CA_BUNDLE (set on these machines) would override session.verify otherwise.
        self.session.trust_env = False
        self.session.verify = str(ca)
        if credentials.cert is not None:
            self.session.cert = (str(credentials.cert), str(credentials.key))
        if credentials.token is not None:
            self.session.headers["Authorization"] = f"Bearer {credentials.token}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; the decoded JSON body, or :class:`ApiError`."""
        kwargs.setdefault("timeout", 30)
        response = self.session.request(method, self.url + path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        return body

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", resource_path(plural, namespace, name))
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    def list(self, plural: str, namespace: str | None = None, **params: str) -> list[dict]:
        """Items of a collection (``labelSelector=``, ``fieldSelector=`` as keyword arguments)."""
        return self.request("GET", resource_path(plural, namespace), params=params)["items"]

    def create(self, plural: str, body: dict, namespace: str | None = None) -> dict:
        return self.request("POST", resource_path(plural, namespace), json=body)

    def patch(
        self,
        plural: str,
        name: str,
        body: dict,
        namespace: str | None = None,
        kind: str = "merge",
    ) -> dict:
        """A ``merge``, ``strategic`` or ``json`` patch."""
        content = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        return self.request(
            "PATCH",
            resource_path(plural, namespace, name),
            json=body,
            headers={"Content-Type": content},
        )

    def delete(
        self, plural: str, name: str, namespace: str | None = None, grace: int | None = None
    ) -> bool:
        """Delete (``grace`` seconds, 0 = at once); False when it was already gone."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            self.request("DELETE", resource_path(plural, namespace, name), json=body)
        except ApiError as err:
            if err.code == 404:
                return False
            raise
        return True

    def wait_for(
        self,
        plural: str,
        name: str,
        namespace: str | None,
        until: Any,
        timeout: float = 60,
    ) -> dict | None:
        """Poll until ``until(obj)`` holds (obj is None once deleted); return the last obj."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(plural, name, namespace)
            if until(obj):
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plural} {namespace}/{name} did not reach the state: {obj}")
            time.sleep(0.1)

    def wait_for_deletion(
        self, plural: str, name: str, namespace: str | None = None, timeout: float = 60
    ) -> None:
        self.wait_for(plural, name, namespace, lambda obj: obj is None, timeout)

    def can_i(self, verb: str, plural: str, namespace: str | None = None, **extra: str) -> bool:
        """What the API server's authorizer says for this identity (a SelfSubjectAccessReview)."""
        base, _, sub = plural.partition("/")
        prefix = RESOURCES[base][0]  # "/api/v1" (the core group "") or "/apis/<group>/<version>"
        attributes = {
            "verb": verb,
            "resource": base,
            "group": prefix.split("/")[2] if prefix.startswith("/apis/") else "",
            "namespace": namespace or "",
            **({"subresource": sub} if sub else {}),
            **extra,
        }
        review = self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            json={"spec": {"resourceAttributes": attributes}},
        )
        return bool(review["status"].get("allowed"))

    def stream_lines(self, path: str, **params: str) -> Iterator[str]:
        """Lines of a streaming GET (a watch, or a followed log)."""
        with self.session.get(self.url + path, params=params, stream=True, timeout=60) as r:
            if r.status_code >= 400:
                raise ApiError(r.status_code, r.text)
            yield from r.iter_lines(decode_unicode=True)
