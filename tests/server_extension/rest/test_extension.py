"""The server extension in a real jupyter_server (pytest-jupyter): routes match the OpenAPI
document, every handler is authenticated, and refused submissions leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from tornado.httpclient import HTTPClientError

from server_extension.handlers import handlers

OPENAPI = yaml.safe_load((Path(__file__).parents[3] / "server_extension/openapi.yaml").read_text())
METHODS = ("get", "post", "put", "patch", "delete")
JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"server_extension": True}}}


def routes() -> dict[str, set[str]]:
    """OpenAPI-style path -> methods the handlers implement."""
    found = {}
    for pattern, handler in handlers("/"):
        path = pattern.removeprefix("/ai-console")
        path = path.replace("([0-9a-f]{32})", "{job_id}")
        for kind in ("log", "output"):
            if "(log|output)" in path:
                found[path.replace("(log|output)", kind)] = _methods(handler)
        if "(log|output)" not in path:
            found[path] = _methods(handler)
    return found


def _methods(handler) -> set[str]:
    ours = [k for k in handler.__mro__ if k.__module__.startswith("server_extension.")]
    return {m for m in METHODS if any(m in vars(k) for k in ours)}


def test_the_handlers_are_the_openapi_document():
    documented = {
        path: {m for m in spec if m in METHODS} for path, spec in OPENAPI["paths"].items()
    }
    assert routes() == documented


def notebook_at(root: Path, name: str, *sources: str, parameters: str | None = None) -> None:
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if parameters:
        cells.insert(0, nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, root / name)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "flavors"),
        ("GET", "parameters?path=a.ipynb"),
        ("GET", "jobs"),
        ("POST", "jobs"),
        ("GET", f"jobs/{JOB}"),
        ("DELETE", f"jobs/{JOB}"),
        ("POST", f"jobs/{JOB}/rerun"),
        ("GET", f"jobs/{JOB}/log"),
        ("GET", f"jobs/{JOB}/output"),
        ("GET", "slice"),
    ],
)
def test_every_handler_refuses_a_caller_without_credentials(
    jp_serverapp, jp_base_url, http_server_client, jp_asyncio_loop, method, path
):
    body = "{}" if method == "POST" else None
    fetch = http_server_client.fetch(
        f"{jp_base_url}ai-console/{path}", method=method, body=body, follow_redirects=False
    )
    with pytest.raises(HTTPClientError) as info:
        jp_asyncio_loop.run_until_complete(fetch)
    assert info.value.code in (401, 403), (method, path, info.value.code)


def test_parameters_are_read_from_the_notebook(jp_fetch, jp_root_dir, jp_asyncio_loop):
    notebook_at(jp_root_dir, "p.ipynb", "print(1)", parameters="n = 3\nflag = True\nxs = [1]")
    fetch = jp_fetch("ai-console", "parameters", params={"path": "p.ipynb"})
    response = jp_asyncio_loop.run_until_complete(fetch)
    assert json.loads(response.body)["parameters"] == [
        {"name": "n", "type": "int", "value": 3},
        {"name": "flag", "type": "bool", "value": True},
        {"name": "xs", "type": "list", "value": [1]},
    ]


def refused(jp_fetch, loop, body: dict) -> tuple[int, dict]:
    fetch = jp_fetch("ai-console", "jobs", method="POST", body=json.dumps(body))
    with pytest.raises(HTTPClientError) as info:
        loop.run_until_complete(fetch)
    return info.value.code, json.loads(info.value.response.body)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"input_path": "../outside.ipynb", "flavor": "x"}, "input_path", "outside"),
        ({"input_path": "/etc/hosts", "flavor": "x"}, "input_path", "relative"),
        ({"input_path": "link.ipynb", "flavor": "x"}, "input_path", "outside"),
        ({"input_path": "big.ipynb", "flavor": "x"}, "input_path", "MiB"),
        ({"input_path": "broken.ipynb", "flavor": "x"}, "input_path", "not a valid notebook"),
        ({"input_path": "other-kernel.ipynb", "flavor": "x"}, "input_path", "kernel 'julia-1.9'"),
        ({"input_path": "p.ipynb", "parameters": {"n": 1.5}}, "parameters.n", "expected int"),
        ({"input_path": "p.ipynb", "parameters": {"1bad": 1}}, "parameters.1bad", "identifier"),
    ],
)
def test_a_refused_submission_names_the_field_and_writes_nothing(
    jp_fetch, jp_root_dir, jp_asyncio_loop, tmp_path, body, field, words
):
    notebook_at(jp_root_dir, "p.ipynb", "print(n)", parameters="n = 1")
    outside = tmp_path / "outside.ipynb"
    notebook_at(tmp_path, "outside.ipynb", "print('secret')")
    (jp_root_dir / "link.ipynb").symlink_to(outside)
    (jp_root_dir / "big.ipynb").write_bytes(b" " * (21 << 20))
    (jp_root_dir / "broken.ipynb").write_text("{not json")
    notebook_at(jp_root_dir, "other-kernel.ipynb", "1")
    nb = nbformat.read(jp_root_dir / "other-kernel.ipynb", 4)
    nb.metadata["kernelspec"] = {"name": "julia-1.9", "display_name": "Julia"}
    nbformat.write(nb, jp_root_dir / "other-kernel.ipynb")
    status, error = refused(jp_fetch, jp_asyncio_loop, body)
    assert status == 400 and error["field"] == field and words in error["message"], error
    assert not (jp_root_dir / ".ai-console").exists()


def test_without_a_jobs_service_the_snapshot_is_undone(jp_fetch, jp_root_dir, jp_asyncio_loop):
    notebook_at(jp_root_dir, "p.ipynb", "print(n)", parameters="n = 1")
    body = {"input_path": "p.ipynb", "flavor": "2C-4G"}
    status, error = refused(jp_fetch, jp_asyncio_loop, body)
    assert status == 503 and "no jobs service" in error["message"]
    assert list((jp_root_dir / ".ai-console" / "jobs").iterdir()) == []
