"""Container-level pieces of the process kubelet: pod IPs, image names, stand-in containers,
per-container state and readiness probes."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import threading

from .behavior import PodBehavior
from .common import deep_copy, get_path
from .process import ContainerProcess

_RESERVED_IPS = {"127.0.0.1", "127.0.0.11", "127.0.0.53", "127.0.0.54"}


class IpPool:
    """Hands out pod IPs 127.0.0.2, 127.0.0.3, ... round-robin (freed ones are reused last)."""

    _FIRST = int(ipaddress.ip_address("127.0.0.2"))
    _LAST = int(ipaddress.ip_address("127.255.255.254"))

    def __init__(self) -> None:
        self._next = self._FIRST
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def allocate(self) -> str:
        """A free loopback address."""
        with self._lock:
            for _ in range(self._LAST - self._FIRST):
                ip = str(ipaddress.ip_address(self._next))
                self._next = self._next + 1 if self._next < self._LAST else self._FIRST
                if ip in self._used or ip in _RESERVED_IPS or ip.endswith((".0", ".255")):
                    continue
                self._used.add(ip)
                return ip
        raise RuntimeError("pod IP pool exhausted")

    def release(self, ip: str | None) -> None:
        """Return an address."""
        with self._lock:
            self._used.discard(ip or "")


def normalize_image(image: str) -> str:
    """``python:3.11`` -> ``docker.io/library/python:3.11`` (what containerd reports)."""
    name = image
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" not in last:
        name += ":latest"
    return name


def image_id(image: str) -> str:
    """A stable fake digest reference for an image."""
    repo = normalize_image(image).split("@")[0].rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


class SimContainer:
    """A simulated container: runs ``run_seconds`` (or forever) and exits with ``exit_code``."""

    def __init__(self, behavior: PodBehavior) -> None:
        self.behavior = behavior
        self._stopped: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def wait(self) -> int:
        if self.behavior.run_seconds is None:
            return await asyncio.shield(self._stopped)
        try:
            return await asyncio.wait_for(asyncio.shield(self._stopped), self.behavior.run_seconds)
        except asyncio.TimeoutError:
            return self.behavior.exit_code

    async def stop(self, grace: float) -> int:
        needed = self.behavior.stop_seconds
        await asyncio.sleep(min(needed, grace))
        code = self.behavior.sigterm_exit_code if needed <= grace else 137
        if not self._stopped.done():
            self._stopped.set_result(code)
        return code


class ContainerState:
    """Kubelet-side state of one container."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.name = spec["name"]
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.restart_count = 0
        self.ready = False
        self.started_once = False
        self.final = False
        self.container_id = ""
        self.handle: SimContainer | ContainerProcess | None = None

    def status(self) -> dict:
        image = self.spec.get("image", "")
        out = {
            "name": self.name,
            "image": normalize_image(image),
            "imageID": image_id(image) if self.started_once else "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": "running" in self.state,
            "state": deep_copy(self.state),
            "lastState": deep_copy(self.last_state),
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    def exit_code(self) -> int | None:
        return get_path(self.state, "terminated", "exitCode")


async def run_probe(container: dict, probe: dict, pod_ip: str) -> bool:
    """One httpGet/tcpSocket readiness probe attempt."""
    handler = probe.get("httpGet") or probe.get("tcpSocket") or {}
    port = handler.get("port")
    if isinstance(port, str):
        named = [p for p in container.get("ports") or [] if p.get("name") == port]
        port = named[0]["containerPort"] if named else None
    if port is None:
        return False
    host = handler.get("host") or pod_ip
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        if "tcpSocket" in probe:
            return True
        path = handler.get("path", "/")
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 1.0)
        parts = line.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()
