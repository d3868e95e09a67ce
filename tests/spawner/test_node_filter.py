"""Which nodes a profile's node selector and required affinity admit (Kubernetes' rules)."""

from __future__ import annotations

from kubernetes_asyncio.client import V1NodeSelectorRequirement, V1NodeSelectorTerm

from spawner.node_filter import admitted_nodes

NODES = {
    "a1": {"pool": "a", "gpus": "4"},
    "a2": {"pool": "a", "gpus": "8", "spot": "true"},
    "b1": {"pool": "b", "gpus": "2"},
    "plain": {},
}


def expr(key: str, operator: str, *values: str) -> dict:
    return (
        {"key": key, "operator": operator, "values": list(values)}
        if values
        else {
            "key": key,
            "operator": operator,
        }
    )


def test_no_constraint_is_any_node() -> None:
    assert admitted_nodes(NODES, None, None) is None
    assert admitted_nodes(NODES, {}, []) is None


def test_selector_labels_must_all_match() -> None:
    assert admitted_nodes(NODES, {"pool": "a"}, None) == {"a1", "a2"}
    assert admitted_nodes(NODES, {"pool": "a", "spot": "true"}, None) == {"a2"}
    assert admitted_nodes(NODES, {"pool": "c"}, None) == frozenset()


def test_terms_are_ored_and_expressions_anded() -> None:
    terms = [
        {"matchExpressions": [expr("pool", "In", "a"), expr("spot", "DoesNotExist")]},
        {"matchExpressions": [expr("gpus", "Lt", "3")]},
    ]
    assert admitted_nodes(NODES, None, terms) == {"a1", "b1"}


def test_each_operator() -> None:
    def only(expression: dict) -> set[str]:
        return set(admitted_nodes(NODES, None, [{"matchExpressions": [expression]}]))

    assert only(expr("pool", "NotIn", "a")) == {"b1", "plain"}  # a missing label is not "a"
    assert only(expr("spot", "Exists")) == {"a2"}
    assert only(expr("gpus", "Gt", "4")) == {"a2"}
    assert only(expr("gpus", "Gt", "many")) == set()  # not a number: no match
    assert only({"key": "pool", "operator": "Sometimes", "values": ["a"]}) == set()


def test_match_fields_name_nodes_and_an_empty_term_matches_none() -> None:
    by_name = [{"matchFields": [expr("metadata.name", "In", "b1", "plain")]}]
    assert admitted_nodes(NODES, None, by_name) == {"b1", "plain"}
    assert admitted_nodes(NODES, None, [{}]) == frozenset()


def test_model_objects_as_kubespawner_may_hold_them() -> None:
    term = V1NodeSelectorTerm(
        match_expressions=[V1NodeSelectorRequirement(key="pool", operator="In", values=["b"])]
    )
    assert admitted_nodes(NODES, {"gpus": "2"}, [term]) == {"b1"}
