"""Which GPU types a slice of several (or any) types may use, given the inventory."""

from __future__ import annotations

from fractions import Fraction

from gpu_fraction.allocator import Allocator
from gpu_fraction.model import GPU, Owner, SliceRequest
from gpu_fraction.type_choice import accepted_types, memory_by_type, memory_text, request_types


def gpu(node: str, index: int, gpu_type: str, memory_mib: int) -> GPU:
    return GPU(node, index, f"GPU-{node}-{index}", gpu_type, memory_mib, gpu_type)


GPUS = [
    gpu("a", 0, "T4", 15360),
    gpu("a", 1, "A100", 81920),
    gpu("b", 0, "A100", 40960),  # a smaller A100 counts the type at its smallest
    gpu("b", 1, "V100", 16384),
]


def test_each_type_counts_with_its_smallest_gpu():
    assert memory_by_type(GPUS) == {"T4": 15360, "A100": 40960, "V100": 16384}


def test_the_types_that_fit_in_the_named_order_else_by_name():
    memory = memory_by_type(GPUS)
    assert accepted_types(None, None, memory) == ["A100", "T4", "V100"]
    assert accepted_types(None, 16384, memory) == ["A100", "V100"]
    assert accepted_types(["V100", "T4", "H100"], None, memory) == ["V100", "T4"]  # H100: none
    assert accepted_types(["V100", "T4"], 40 * 1024, memory) == []


def test_the_request_for_one_several_or_any():
    assert request_types(None) == {"gpu_type": None}
    assert request_types(["A100"]) == {"gpu_type": "A100"}
    assert request_types(["A100", "V100"]) == {"gpu_type": None, "gpu_types": {"A100", "V100"}}


def test_the_allocator_places_a_request_of_the_types_that_fit():
    allocator = Allocator(GPUS)
    kinds = request_types(accepted_types(None, 32 * 1024, memory_by_type(GPUS)))
    held = allocator.reserve(SliceRequest(fraction=Fraction(1, 2), **kinds), Owner("job", "u"))
    assert held.gpu_type == "A100"


def test_memory_as_people_say_it():
    assert [memory_text(m) for m in (16384, 15360, 1536, 512)] == [
        "16 GiB",
        "15 GiB",
        "1.5 GiB",
        "512 MiB",
    ]
