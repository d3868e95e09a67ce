from fractions import Fraction

import pytest

from gpu_fraction.errors import InvalidRequestError, InventoryError
from gpu_fraction.model import GPU, Allocation, Owner, SliceRequest, parse_fraction


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1/4", Fraction(1, 4)),
        ("0.25", Fraction(1, 4)),
        (0.5, Fraction(1, 2)),
        (2, Fraction(2)),
        ("1", Fraction(1)),
        (Fraction(1, 8), Fraction(1, 8)),
        (1 / 3, Fraction(1, 3)),
    ],
)
def test_fraction_forms(value, expected):
    assert parse_fraction(value) == expected


@pytest.mark.parametrize("value", [0, -0.25, "0", "1.5", 9, "abc", None, True, float("nan"), "1/0"])
def test_bad_fraction_names_the_field(value):
    with pytest.raises(InvalidRequestError) as err:
        SliceRequest("RTX3090", value)
    assert err.value.field == "fraction"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"memory_mib": -1}, "memory_mib"),
        ({"memory_mib": 0}, "memory_mib"),
        ({"compute_min": 60, "compute_max": 50}, "compute_min"),
        ({"compute_max": 0}, "compute_max"),
        ({"compute_max": 101}, "compute_max"),
        ({"cpu_millis": -5}, "cpu_millis"),
        ({"gpu_type": "RTX 3090"}, "gpu_type"),
        ({"gpu_type": ""}, "gpu_type"),
        ({"node": ""}, "node"),
    ],
)
def test_bad_request_fields(kwargs, field):
    args = {"gpu_type": "RTX3090", "fraction": "1/4", **kwargs}
    with pytest.raises(InvalidRequestError) as err:
        SliceRequest(**args)
    assert err.value.field == field
    assert field in str(err.value)


def test_whole_gpu_cannot_set_memory():
    with pytest.raises(InvalidRequestError, match="memory_mib"):
        SliceRequest("A100", 2, memory_mib=1000)


def test_derived_memory_and_compute():
    request = SliceRequest("RTX3090", "1/4")
    assert request.memory_on(24576) == 6144
    assert request.guaranteed_compute() == 25
    assert request.burst_compute() == 100
    assert SliceRequest("RTX3090", "1/8").guaranteed_compute() == 12
    whole = SliceRequest("A100", 2)
    assert (whole.count, whole.is_whole, whole.guaranteed_compute()) == (2, True, 100)
    explicit = SliceRequest("RTX3090", "1/4", memory_mib=4000, compute_min=10, compute_max=40)
    assert explicit.memory_on(24576) == 4000
    assert (explicit.guaranteed_compute(), explicit.burst_compute()) == (10, 40)


def test_owner_and_gpu_validation():
    with pytest.raises(InvalidRequestError, match=r"owner\.kind"):
        Owner("pod", "alice")
    with pytest.raises(InvalidRequestError, match=r"owner\.user"):
        Owner("job", "")
    with pytest.raises(InventoryError, match="memory_mib"):
        GPU("n", 0, "GPU-x", "p", -1, "RTX3090")
    with pytest.raises(InventoryError, match="uuid"):
        GPU("n", 0, "", "p", 1024, "RTX3090")


def test_cpu_only_allocation_holds_no_gpu():
    owner = Owner("job", "ann")
    allocation = Allocation.cpu_only("a1", owner, "node-1", 4000, 8192)
    assert (allocation.node, allocation.cpu_millis, allocation.host_memory_mib) == (
        "node-1",
        4000,
        8192,
    )
    assert allocation.gpu_uuids == () and allocation.fraction == 0 and not allocation.is_whole
    assert allocation.memory_mib == allocation.compute_min == 0
    assert allocation.is_cpu_only
    assert allocation.describe() == "no GPU, 4 CPU and 8192 MiB memory on node node-1"
