"""The runner's side of kept outputs: send the finished job's files to the jobs service.

Only where the service asks for them (on Kubernetes, where the owner's storage is out of reach
of everyone but the owner once the pod is gone): the service sets the two variables below in the
runner's environment. The standard library only, since the runner runs in users' images.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

ENV_UPLOAD_URL = "AI_CONSOLE_UPLOAD_URL"
ENV_UPLOAD_TOKEN = "AI_CONSOLE_UPLOAD_TOKEN"
TIMEOUT_SECONDS = 30


def send_outputs(files: Iterable[tuple[str, Path]], say: Callable[[str], None]) -> None:
    """PUT each existing ``(format, path)`` to the service; failures are said, never raised
    (the job's result is in the owner's storage whatever happens here)."""
    url, token = os.environ.get(ENV_UPLOAD_URL), os.environ.get(ENV_UPLOAD_TOKEN)
    if not url or not token:
        return
    for fmt, path in files:
        if not path.is_file():
            continue
        request = urllib.request.Request(
            f"{url.rstrip('/')}/{fmt}",
            data=path.read_bytes(),
            method="PUT",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/octet-stream",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS):
                pass
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode("utf-8", "replace")
            say(f"the jobs service did not keep {path.name}: HTTP {error.code} {detail}")
        except (OSError, ValueError) as error:
            say(f"could not send {path.name} to the jobs service: {error}")
