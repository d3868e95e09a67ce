"""Cluster names and the pod's own address for a process-kubelet container (see
``tests/control_plane/services.py``). Python runs this at start-up from ``PYTHONPATH``.

* ``socket.getaddrinfo``, ``gethostbyname`` and ``gethostbyname_ex`` resolve ``<svc>``,
  ``<svc>.<ns>``, ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local`` from the kubelet's
  table (``$TEST_KUBELET_SERVICES``), the pod's namespace being the search domain; every other
  name is resolved as before.
* ``aiodns`` is hidden: it resolves with c-ares, past ``getaddrinfo``; without it aiohttp (the
  hub's proxy client, kubernetes_asyncio) resolves with ``getaddrinfo`` in a thread.
* An IPv4 wildcard bind (``0.0.0.0`` or ``""``) binds the pod's address
  (``$TEST_KUBELET_POD_IP``), as it would inside the pod's own network namespace.

Then it runs the next ``sitecustomize`` on ``sys.path`` (an image's, or AI Console's start-up
hook), as ``site`` would have. No ``__init__.py``: this folder is a path entry.
"""

import json
import os
import socket
import sys

_TABLE = os.environ.get("TEST_KUBELET_SERVICES", "")
_NAMESPACE = os.environ.get("TEST_KUBELET_NAMESPACE", "default")
_POD_IP = os.environ.get("TEST_KUBELET_POD_IP", "")
_cache = {"mtime": None, "table": {}}


def _table():
    try:
        mtime = os.stat(_TABLE).st_mtime_ns
    except OSError:
        return {}
    if mtime != _cache["mtime"]:
        try:
            with open(_TABLE, encoding="utf-8") as fh:
                _cache["table"] = json.load(fh)
            _cache["mtime"] = mtime
        except (OSError, ValueError):
            return _cache["table"]
    return _cache["table"]


def cluster_address(host):
    """The Service address for a cluster name, or None."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or not host or not _TABLE:
        return None
    name = host.rstrip(".").lower()
    if not name or name[-1].isdigit() or ":" in name:
        return None  # an address, not a name
    for suffix in (".svc.cluster.local", ".svc"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    parts = name.split(".")
    if len(parts) == 1:
        key = f"{_NAMESPACE}/{parts[0]}"
    elif len(parts) == 2:
        key = f"{parts[1]}/{parts[0]}"
    else:
        return None
    return _table().get(key)


_getaddrinfo = socket.getaddrinfo
_gethostbyname = socket.gethostbyname
_gethostbyname_ex = socket.gethostbyname_ex
_bind = socket.socket.bind


def getaddrinfo(host, *args, **kwargs):
    address = cluster_address(host)
    return _getaddrinfo(address or host, *args, **kwargs)


def gethostbyname(host):
    return cluster_address(host) or _gethostbyname(host)


def gethostbyname_ex(host):
    address = cluster_address(host)
    return (host, [], [address]) if address else _gethostbyname_ex(host)


def bind(self, address):
    if (
        _POD_IP
        and self.family == socket.AF_INET
        and isinstance(address, tuple)
        and address[0] in ("", "0.0.0.0")
    ):
        address = (_POD_IP, *address[1:])
    return _bind(self, address)


def _install():
    sys.modules.setdefault("aiodns", None)  # import aiodns -> ImportError
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
    socket.socket.bind = bind


def _chain():
    """Take this folder off sys.path and run the next sitecustomize, as site.py would."""
    here = os.path.realpath(os.path.dirname(__file__))
    positions = [i for i, e in enumerate(sys.path) if e and os.path.realpath(e) == here]
    later = list(sys.path[positions[-1] + 1 :]) if positions else list(sys.path)
    for i in reversed(positions):
        del sys.path[i]
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", later)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_install()
_chain()
