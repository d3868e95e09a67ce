"""Which nodes a pod's node selector and required node affinity admit, from the nodes' labels.

A GPU profile's ``node_selector`` / ``node_affinity_required`` (z2jh node pools) and a
``nodeSelector`` in ``extra_pod_config`` are passed to the allocator as the set of nodes it may
place the slice on; otherwise it would hold a slice on a node the scheduler will never accept,
and the pod would stay Pending. Matching follows the Kubernetes rules: the selector's labels
must all match, and the required terms are ORed, each an AND of its expressions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Labels = Mapping[str, str]


def admitted_nodes(
    node_labels: Mapping[str, Labels],
    selector: Mapping[str, str] | None,
    terms: Iterable[Any] | None,
) -> frozenset[str] | None:
    """The names of the nodes both ``selector`` and the required ``terms`` admit; ``None``
    when neither constrains anything."""
    terms = [_plain(t) for t in terms or ()]
    if not selector and not terms:
        return None
    return frozenset(
        name
        for name, labels in node_labels.items()
        if all(labels.get(k) == v for k, v in (selector or {}).items())
        and (not terms or any(_term_matches(t, name, labels) for t in terms))
    )


def _plain(value: Any) -> Any:
    """A Kubernetes model object as the camelCase dict KubeSpawner would send."""
    if hasattr(value, "to_dict") and hasattr(value, "attribute_map"):
        return {
            value.attribute_map[k]: _plain(getattr(value, k))
            for k in value.attribute_map
            if getattr(value, k) is not None
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _term_matches(term: Mapping[str, Any], name: str, labels: Labels) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches no node (Kubernetes' rule)
    return all(_matches(e, labels) for e in expressions) and all(
        _matches(f, {"metadata.name": name}) for f in fields
    )


def _matches(expression: Mapping[str, Any], labels: Labels) -> bool:
    key, operator = expression.get("key"), expression.get("operator")
    values = list(expression.get("values") or [])
    present = key in labels
    value = labels.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False
