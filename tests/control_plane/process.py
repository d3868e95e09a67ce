"""Running a pod's container as a local process: environment, volumes, bind rewriting, logs.

Bind rewriting (``PodBehavior.rewrite_bind_args``): every process shares this machine's network
namespace, so wildcard binds are pointed at the pod's own loopback address. Exactly these are
rewritten when their value is a wildcard (``0.0.0.0``, ``::``, ``[::]``, ``*``, or empty),
optionally followed by ``:port``:

* arguments ``--ip``, ``--host``, ``--bind``, ``--address``, ``--listen``, ``--bind-address``,
  ``-b``, ``--api-ip`` and ``--metrics-ip`` (configurable-http-proxy's) in both
  ``--flag=value`` and ``--flag value`` forms, and any ``--<Something>.ip=value`` traitlets
  option (``--ServerApp.ip``, ``--NotebookApp.ip``, ...);
* the host of ``JUPYTERHUB_SERVICE_URL`` (JupyterHub >= 2 tells the single-user server where to
  bind through it; KubeSpawner sets ``http://0.0.0.0:8888/...``).

``localhost``/``127.0.0.1`` are left alone. Python programs that bind an IPv4 wildcard in their
own code (``c.JupyterHub.hub_ip = "0.0.0.0"``, ``python -m http.server``) get the pod's address
from the ``sitecustomize`` every container is given (:mod:`services`), which also resolves
Service names. Other programs that bind a wildcard without being told must be given an address;
the downward API (``fieldRef: status.podIP``) or ``$(TEST_KUBELET_POD_IP)`` provide it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gpu_fraction.quantity import parse_quantity

from .behavior import PodBehavior, ProcessSpec
from .common import deep_copy, get_path, rfc3339_micro
from .services import pod_network_env

WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "*", "")
BIND_FLAGS = (
    "--ip",
    "--host",
    "--bind",
    "--address",
    "--listen",
    "--bind-address",
    "-b",
    "--api-ip",  # configurable-http-proxy's API
    "--metrics-ip",
)
PASSTHROUGH_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "TZ",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PYTHONDONTWRITEBYTECODE",
    "COVERAGE_PROCESS_START",
)
_TRAIT_IP_RE = re.compile(r"^--[A-Za-z_][A-Za-z0-9_]*\.ip$")


class ConfigError(Exception):
    """A referenced ConfigMap/Secret is missing (CreateContainerConfigError / FailedMount)."""


def _rewrite_value(value: str, ip: str) -> str | None:
    if value in WILDCARD_HOSTS:
        return ip
    for host in WILDCARD_HOSTS[:4]:
        if value.startswith(host + ":") and value[len(host) + 1 :].isdigit():
            return f"{ip}:{value[len(host) + 1 :]}"
    return None


def rewrite_bind_args(argv: list[str], ip: str) -> list[str]:
    """Point wildcard bind options at ``ip`` (see the module docstring for the exact rules)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if eq and (flag in BIND_FLAGS or _TRAIT_IP_RE.match(flag)):
            new = _rewrite_value(value, ip)
            out.append(f"{flag}={new}" if new is not None else arg)
        elif not eq and arg in BIND_FLAGS and i + 1 < len(argv):
            new = _rewrite_value(argv[i + 1], ip)
            out += [arg, new if new is not None else argv[i + 1]]
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def rewrite_service_url(env: dict[str, str], ip: str) -> None:
    """Point a wildcard host in ``JUPYTERHUB_SERVICE_URL`` at ``ip``."""
    url = env.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        return
    parts = urlsplit(url)
    if (parts.hostname or "") in ("0.0.0.0", "::", "*", ""):
        netloc = ip + (f":{parts.port}" if parts.port else "")
        env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(parts._replace(netloc=netloc))


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; ``$$`` escapes; unknown references stay as they are."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("$$", i):
            out += "$"
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2 : end]
            out += env[name] if name in env else text[i : end + 1]
            i = end + 1
        else:
            out += text[i]
            i += 1
    return out


# (kind "configmap" | "secret", namespace, name) -> the object, or None when it does not exist
Lookup = Callable[[str, str, str], "dict | None"]


def _data(obj: dict, kind: str) -> dict[str, str]:
    if kind == "secret":
        return {
            k: base64.b64decode(v).decode("utf-8", "replace")
            for k, v in (obj.get("data") or {}).items()
        }
    return dict(obj.get("data") or {})


def _field_ref(pod: dict, path: str) -> str:
    md, status = pod["metadata"], pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (md.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": md.get("name"),
        "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"),
        "spec.nodeName": get_path(pod, "spec", "nodeName"),
        "spec.serviceAccountName": get_path(pod, "spec", "serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    return str(simple.get(path) or "")


def _resource_ref(container: dict, ref: dict, node: dict | None) -> str:
    section, _, name = ref.get("resource", "").partition(".")
    value = get_path(container, "resources", section, name)
    if value is None:
        value = get_path(node or {}, "status", "allocatable", name, default="0")
    divisor = parse_quantity(ref.get("divisor", "1") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


def container_env(
    lookup: Lookup, pod: dict, container: dict, node: dict | None, api_host: str, api_port: int
) -> dict[str, str]:
    """The environment the kubelet would give the container (raises :class:`ConfigError`)."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {
        "HOSTNAME": pod["metadata"]["name"],
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        "KUBERNETES_PORT": f"tcp://{api_host}:{api_port}",
    }
    for src in container.get("envFrom") or []:
        kind = "configmap" if "configMapRef" in src else "secret"
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        obj = lookup(kind, ns, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind} "{ref.get("name")}" not found')
        for key, value in _data(obj, kind).items():
            env[src.get("prefix", "") + key] = value
    for item in container.get("env") or []:
        name, source = item["name"], item.get("valueFrom")
        if source is None:
            env[name] = expand(item.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = _field_ref(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = _resource_ref(container, source["resourceFieldRef"], node)
        else:
            kind = "configmap" if "configMapKeyRef" in source else "secret"
            ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
            obj = lookup(kind, ns, ref.get("name", ""))
            data = _data(obj, kind) if obj is not None else None
            if data is None or ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                if data is None:
                    raise ConfigError(f'{kind} "{ref.get("name")}" not found')
                label = "ConfigMap" if kind == "configmap" else "Secret"
                raise ConfigError(
                    f"couldn't find key {ref.get('key')} in {label} {ns}/{ref.get('name')}"
                )
            env[name] = data[ref["key"]]
    return env


def _write_items(path: Path, data: dict[str, str], items: list[dict] | None) -> None:
    """configMap/secret data as files: every key, or just ``items`` (key -> path)."""
    chosen = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, rel in chosen:
        if key in data:
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(data[key])


def _downward_items(pod: dict, path: Path, items: list[dict]) -> None:
    for item in items:
        if "fieldRef" in item:
            (path / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (path / item["path"]).write_text(_field_ref(pod, item["fieldRef"]["fieldPath"]))


def prepare_volumes(
    lookup: Lookup, pod: dict, sandbox: Path, root: Path, token: str | None = None
) -> dict[str, Path]:
    """Materialise pod volumes as local directories; returns volume name -> directory.

    ``token`` is the pod's bound ServiceAccount token, written where a projected
    ``serviceAccountToken`` source asks for it.
    """
    ns = pod["metadata"]["namespace"]
    dirs: dict[str, Path] = {}
    for vol in get_path(pod, "spec", "volumes", default=[]) or []:
        name = vol["name"]
        if "persistentVolumeClaim" in vol:
            path = root / "pvc" / ns / vol["persistentVolumeClaim"]["claimName"]
        elif "hostPath" in vol:
            path = root / "hostpath" / vol["hostPath"]["path"].lstrip("/")
        else:
            path = sandbox / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        sources = [vol, *(get_path(vol, "projected", "sources", default=[]) or [])]
        for source in sources:
            for kind, key in (("configmap", "configMap"), ("secret", "secret")):
                if key not in source:
                    continue
                ref = source[key]
                obj_name = ref.get("name") or ref.get("secretName", "")
                obj = lookup(kind, ns, obj_name)
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(
                        f'MountVolume.SetUp failed for volume "{name}" : '
                        f'{kind} "{obj_name}" not found'
                    )
                _write_items(path, _data(obj, kind), ref.get("items"))
            if "downwardAPI" in source:
                _downward_items(pod, path, source["downwardAPI"].get("items") or [])
            if "serviceAccountToken" in source and token is not None:
                (path / source["serviceAccountToken"]["path"]).write_text(token)
        dirs[name] = path
    return dirs


def container_mounts(container: dict, volumes: dict[str, Path]) -> dict[str, Path]:
    """mountPath -> local directory for one container (``subPath`` honoured)."""
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        base = volumes.get(mount["name"])
        if base is None:
            continue
        path = base / mount["subPath"] if mount.get("subPath") else base
        path.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = path
    return mounts


def local_dir_for(path: str, mounts: dict[str, Path], sandbox: Path) -> Path:
    """Where a container path lives locally: inside a mount, else under ``sandbox/rootfs``."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            rest = path[len(mount_path) :].lstrip("/")
            return mounts[mount_path] / rest if rest else mounts[mount_path]
    return sandbox / "rootfs" / path.lstrip("/")


def mount_namespace_argv(spec: ProcessSpec) -> list[str]:
    """``spec.argv`` run in a private mount namespace with every volume bind-mounted at its
    ``mountPath`` (``readOnly`` honoured) and the container's ``workingDir`` as its directory,
    as a container sees them. Needs root and ``unshare``; elsewhere the argv is unchanged and
    the volumes exist only as the local folders in ``ProcessSpec.mounts``.
    """
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None or not spec.mounts:
        return spec.argv
    read_only = {
        m["mountPath"] for m in spec.container.get("volumeMounts") or [] if m.get("readOnly")
    }
    lines = ["set -e"]
    # Shorter paths first, so a mount inside another mount lands on top of it; read-only once
    # every mount point exists (one inside a read-only volume, as a runtime makes it).
    for target in sorted(spec.mounts, key=len):
        source, dest = shlex.quote(str(spec.mounts[target])), shlex.quote(target)
        lines.append(f"mkdir -p -- {dest} && mount --bind -- {source} {dest}")
    for target in sorted(spec.mounts, key=len):
        if target in read_only:
            lines.append(f"mount -o remount,bind,ro -- {shlex.quote(target)}")
    working_dir = spec.container.get("workingDir")
    if working_dir:
        lines.append(f"mkdir -p -- {shlex.quote(working_dir)} && cd -- {shlex.quote(working_dir)}")
    lines.append('exec "$@"')
    script = "\n".join(lines)
    wrapper = [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
    return [*wrapper, "sh", *spec.argv]


class ContainerProcess:
    """A running container process: its output goes to a CRI-style timestamped log file."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self._pump = asyncio.ensure_future(self._copy_output())

    @classmethod
    async def start(
        cls, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path
    ) -> ContainerProcess:
        """Spawn in its own session so the whole process group can be signalled."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=str(cwd),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=1 << 20,
        )
        return cls(proc, log_path)

    async def _copy_output(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                text = line.decode("utf-8", "replace")
                log.write(f"{rfc3339_micro()} {text if text.endswith(chr(10)) else text + chr(10)}")
                log.flush()

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.proc.pid

    async def wait(self) -> int:
        """Wait for exit; the exit code as the kubelet reports it (128+signal when killed)."""
        code = await self.proc.wait()
        await self._pump
        return 128 - code if code < 0 else code

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace: float) -> int:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout=max(grace, 0.0))
            except asyncio.TimeoutError:
                self._signal(signal.SIGKILL)
        # Stray children of the group die with the container, as they would with its cgroup.
        self._signal(signal.SIGKILL)
        return await self.wait()


def build_process_spec(
    pod: dict,
    container: dict,
    behavior: PodBehavior,
    kubelet_env: dict[str, str],
    pod_ip: str,
    sandbox: Path,
    volumes: dict[str, Path],
    services_table: Path | None = None,
) -> ProcessSpec:
    """Command line, environment and working directory of a run-process container.

    Environment, lowest precedence first: ``PASSTHROUGH_ENV`` from the test process (with the
    test interpreter's directory prepended to PATH, standing in for the image's tools), what
    the kubelet gives the container, the harness's own variables (HOME and TMPDIR in the pod
    sandbox, ``TEST_KUBELET_POD_IP``/``_POD_NAME``/``_NAMESPACE``/``_SANDBOX``), then
    ``PodBehavior.env``, the cluster's names (``services_table``, see :mod:`services`);
    finally bind rewriting and the ``transform`` hook.
    """
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(sys.executable), env.get("PATH")]))
    env.update(kubelet_env)
    home, tmp = sandbox / "home", sandbox / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "TEST_KUBELET_POD_IP": pod_ip,
            "TEST_KUBELET_POD_NAME": pod["metadata"]["name"],
            "TEST_KUBELET_NAMESPACE": pod["metadata"]["namespace"],
            "TEST_KUBELET_SANDBOX": str(sandbox),
        }
    )
    if behavior.command is not None:
        argv = list(behavior.command)
    else:
        raw = (container.get("command") or []) + (container.get("args") or [])
        argv = [expand(a, env) for a in raw]
    argv += list(behavior.append_args)
    env.update(behavior.env)
    if services_table is not None:
        pod_network_env(env, services_table)
    if behavior.rewrite_bind_args:
        argv = rewrite_bind_args(argv, pod_ip)
        rewrite_service_url(env, pod_ip)
    mounts = container_mounts(container, volumes)
    working_dir = container.get("workingDir")
    cwd = local_dir_for(working_dir, mounts, sandbox) if working_dir else home
    cwd.mkdir(parents=True, exist_ok=True)
    spec = ProcessSpec(
        argv, env, cwd, deep_copy(pod), deep_copy(container), pod_ip, sandbox, mounts
    )
    if behavior.transform is not None:
        spec = behavior.transform(spec) or spec
    return spec
