"""Unit tests of the harness's building blocks (no server needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.k8s_harness import quantity
from tests.k8s_harness.errors import ApiError
from tests.k8s_harness.patch import json_patch, merge_patch, strategic_merge_patch
from tests.k8s_harness.process import expand, rewrite_bind_args
from tests.k8s_harness.selectors import parse_field_selector, parse_label_selector


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("tier in (a, b),app", {"tier": "b", "app": "x"}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("!gpu", {"gpu": "1"}, False),
        ("gpu", {"gpu": ""}, True),
        ("example.com/size>3", {"example.com/size": "4"}, True),
        ("app=", {"app": ""}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict, expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["a in b", "=x", "a=b c", "a in ()", "a,", "Bad Key=1", "a=-x-"])
def test_bad_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_label_selector(bad)
    assert info.value.code == 400
    assert info.value.message.startswith("unable to parse requirement")


def test_field_selectors() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}}
    assert parse_field_selector("status.phase=Running,metadata.name!=q", "pods").matches(pod)
    assert not parse_field_selector("status.phase==Pending", "pods").matches(pod)
    assert parse_field_selector(r"metadata.name=a\,b", "pods").terms[0][2] == "a,b"
    with pytest.raises(ApiError) as info:
        parse_field_selector("status.phase=Running", "configmaps")
    assert info.value.message == "field label not supported: status.phase"


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    pod = {
        "spec": {
            "containers": [
                {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
                {"name": "b", "image": "y"},
            ],
            "volumes": [{"name": "v1", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
        },
        "metadata": {"finalizers": ["one"], "labels": {"drop": "me", "keep": "me"}},
    }
    patch = {
        "metadata": {"finalizers": ["two"], "labels": {"drop": None}},
        "spec": {
            "containers": [
                {"name": "a", "env": [{"name": "B", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "z"},
            ],
            "volumes": [{"name": "v2", "emptyDir": {}}],
            "tolerations": [{"key": "other", "operator": "Exists"}],
        },
    }
    out = strategic_merge_patch(pod, patch, "v1", "Pod")
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "c"]
    assert out["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    assert [v["name"] for v in out["spec"]["volumes"]] == ["v1", "v2"]
    assert out["spec"]["tolerations"] == [{"key": "other", "operator": "Exists"}]  # replaced
    assert out["metadata"] == {"finalizers": ["one", "two"], "labels": {"keep": "me"}}
    replaced = strategic_merge_patch(
        pod, {"spec": {"$patch": "replace", "containers": []}}, "v1", "Pod"
    )
    assert replaced["spec"] == {"containers": []}


def test_merge_and_json_patch() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert merge_patch(doc, {"a": {"b": None, "c": [3]}, "e": 1}) == {
        "a": {"c": [3]},
        "d": "x",
        "e": 1,
    }
    ops = [
        {"op": "add", "path": "/a/c/-", "value": 9},
        {"op": "replace", "path": "/d", "value": "y"},
        {"op": "move", "from": "/a/b", "path": "/b"},
        {"op": "test", "path": "/b", "value": 1},
        {"op": "remove", "path": "/a/c/0"},
    ]
    assert json_patch(doc, ops) == {"a": {"c": [2, 9]}, "d": "y", "b": 1}
    with pytest.raises(ApiError) as info:
        json_patch(doc, [{"op": "test", "path": "/d", "value": "nope"}])
    assert info.value.code == 422
    with pytest.raises(ApiError):
        json_patch(doc, [{"op": "remove", "path": "/missing"}])


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("0.5", "500m"),
        ("1000m", "1"),
        ("2000", "2k"),
        ("1.5Gi", "1536Mi"),
        ("1024Mi", "1Gi"),
        (2, "2"),
        ("100Ki", "100Ki"),
        ("1e3", "1e3"),
    ],
)
def test_quantity_canonical_form(value: str | int, canonical: str) -> None:
    assert quantity.canonical(value) == canonical


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["", "m", "k", "Mi", "Gi"]))
def test_quantity_canonical_keeps_value(number: int, suffix: str) -> None:
    text = f"{number}{suffix}"
    assert quantity.parse(quantity.canonical(text)) == quantity.parse(text)


def test_bind_rewriting_and_expansion() -> None:
    argv = [
        "srv",
        "--ip=0.0.0.0",
        "--bind",
        "[::]:80",
        "-b",
        "127.0.0.1",
        "--x.ip=",
        "--ip2=0.0.0.0",
    ]
    assert rewrite_bind_args(argv, "127.0.0.9") == [
        "srv",
        "--ip=127.0.0.9",
        "--bind",
        "127.0.0.9:80",
        "-b",
        "127.0.0.1",
        "--x.ip=127.0.0.9",
        "--ip2=0.0.0.0",
    ]
    assert expand("$(A)-$$(A)-$(B)", {"A": "1"}) == "1-$(A)-$(B)"
