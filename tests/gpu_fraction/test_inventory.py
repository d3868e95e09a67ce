"""Inventory from Kubernetes nodes, from NVML (faked) and from a simulated declaration."""

from __future__ import annotations

import json
from fractions import Fraction
from types import SimpleNamespace

import pynvml
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_fraction import inventory as inv
from gpu_fraction import keys, quantity
from gpu_fraction import simulated as sim
from gpu_fraction.errors import InventoryError
from gpu_fraction.model import GPU, NodeCapacity, check_gpu_type


def node(
    name: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    cpu: str | None = "16",
    memory: str | None = "65843420Ki",
) -> dict:
    allocatable = {}
    if cpu is not None:
        allocatable["cpu"] = cpu
    if memory is not None:
        allocatable["memory"] = memory
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "status": {"allocatable": allocatable, "capacity": dict(allocatable)},
    }


def gfd(product: str = "NVIDIA-GeForce-RTX-3090", memory: str = "24576", count: str = "2"):
    return {
        keys.LABEL_SHARING: "true",
        keys.GFD_PRODUCT: product,
        keys.GFD_MEMORY: memory,
        keys.GFD_COUNT: count,
    }


# --- gpu_type_from_product -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        ("NVIDIA GeForce RTX 3090", "RTX3090"),
        ("NVIDIA-GeForce-RTX-3090", "RTX3090"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("NVIDIA-A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("Tesla V100-SXM2-16GB", "V100-SXM2-16GB"),
        ("Tesla-T4-SHARED", "T4"),
        ("NVIDIA RTX A6000", "RTX-A6000"),
        ("NVIDIA H100 80GB HBM3", "H100-80GB-HBM3"),
        ("NVIDIA GeForce GTX 1080 Ti", "GTX1080-Ti"),
        ("NVIDIA TITAN RTX", "TITAN-RTX"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA H200", "H200"),
        ("", "GPU"),
        ("NVIDIA", "GPU"),
        ("(weird) ___", "weird-___"),
    ],
)
def test_gpu_type_from_product(product: str, expected: str) -> None:
    assert inv.gpu_type_from_product(product) == expected


@given(st.text(max_size=200))
def test_gpu_type_from_product_is_always_valid(product: str) -> None:
    check_gpu_type(inv.gpu_type_from_product(product))


# --- quantities ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16", Fraction(16)),
        ("15500m", Fraction(31, 2)),
        ("1.5", Fraction(3, 2)),
        ("65843420Ki", Fraction(65843420 * 1024)),
        ("64Gi", Fraction(64 * 2**30)),
        ("68719476736", Fraction(68719476736)),
        ("2M", Fraction(2_000_000)),
        ("1k", Fraction(1000)),
        ("1e3", Fraction(1000)),
        ("1E", Fraction(10**18)),
        ("500u", Fraction(1, 2000)),
        (".5", Fraction(1, 2)),
        (8, Fraction(8)),
    ],
)
def test_parse_quantity(text: str | int, value: Fraction) -> None:
    assert quantity.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "16 cores", "1.2.3", "-1", "5Kb", "Gi", True, None])
def test_parse_quantity_rejects(text: object) -> None:
    with pytest.raises(InventoryError) as err:
        quantity.parse_quantity(text, "status.allocatable.cpu")
    assert err.value.field == "status.allocatable.cpu"


def test_quantity_conversions_round_down() -> None:
    assert quantity.cpu_millis_from_quantity("15500m") == 15500
    assert quantity.cpu_millis_from_quantity("1.2345") == 1234
    assert quantity.memory_mib_from_quantity("64Gi") == 65536
    assert quantity.memory_mib_from_quantity("65843420Ki") == 64300  # 64300.21 MiB
    assert quantity.memory_mib_from_quantity("68719476736") == 65536
    assert quantity.memory_mib_from_quantity("1M") == 0


# --- from_nodes ----------------------------------------------------------------------------------


def test_from_nodes_gfd_labels_only() -> None:
    nodes = [node("gpu-01", gfd(), cpu="15500m", memory="64Gi")]
    result = inv.from_nodes(nodes)
    assert result.source == "kubernetes"
    assert not result.simulated
    assert result.error is None
    assert result.gpus == (
        GPU("gpu-01", 0, "gpu-01/gpu0", "NVIDIA-GeForce-RTX-3090", 24576, "RTX3090"),
        GPU("gpu-01", 1, "gpu-01/gpu1", "NVIDIA-GeForce-RTX-3090", 24576, "RTX3090"),
    )
    assert result.nodes == {"gpu-01": NodeCapacity("gpu-01", 15500, 65536, None)}
    assert result.types() == ["RTX3090"]


def test_from_nodes_agent_annotation_gives_real_uuids() -> None:
    reported = [
        {"index": 1, "uuid": "GPU-bbbb", "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
        {"index": 0, "uuid": "GPU-aaaa", "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
    ]
    labels = gfd() | {keys.LABEL_ZONE: "lab-a"}
    result = inv.from_nodes([node("gpu-02", labels, {keys.ANN_NODE_GPUS: json.dumps(reported)})])
    assert [(g.index, g.uuid, g.product) for g in result.gpus] == [
        (0, "GPU-aaaa", "NVIDIA GeForce RTX 3090"),
        (1, "GPU-bbbb", "NVIDIA GeForce RTX 3090"),
    ]
    assert {g.gpu_type for g in result.gpus} == {"RTX3090"}
    assert result.nodes["gpu-02"].zone == "lab-a"


def test_from_nodes_annotation_without_gfd_labels_and_mixed_gpus() -> None:
    reported = [
        {"index": 0, "uuid": "GPU-a", "product": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920},
        {"index": 1, "uuid": "GPU-b", "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
    ]
    labels = {keys.LABEL_SHARING: "true", keys.LABEL_TOPOLOGY_ZONE: "zone-1"}
    result = inv.from_nodes([node("mixed", labels, {keys.ANN_NODE_GPUS: json.dumps(reported)})])
    assert [g.gpu_type for g in result.gpus] == ["A100-SXM4-80GB", "RTX3090"]
    assert [g.memory_mib for g in result.gpus] == [81920, 24576]
    assert result.nodes["mixed"].zone == "zone-1"
    assert result.types() == ["A100-SXM4-80GB", "RTX3090"]


def test_from_nodes_annotation_falls_back_to_labels_for_product_and_memory() -> None:
    reported = [{"index": 0, "uuid": "GPU-a"}]
    result = inv.from_nodes([node("n", gfd(count="1"), {keys.ANN_NODE_GPUS: json.dumps(reported)})])
    assert result.gpus[0].product == "NVIDIA-GeForce-RTX-3090"
    assert result.gpus[0].memory_mib == 24576


def test_from_nodes_skips_unlabelled_and_non_gpu_nodes() -> None:
    labels_no_sharing = gfd()
    del labels_no_sharing[keys.LABEL_SHARING]
    nodes = [
        node("plain-gpu", labels_no_sharing),
        node("cpu-only", {keys.LABEL_SHARING: "true"}),
        node("zero", gfd(count="0")),
        node("shared", gfd()),
    ]
    result = inv.from_nodes(nodes)
    assert sorted(result.nodes) == ["shared"]
    everything = inv.from_nodes(nodes, require_sharing_label=False)
    assert sorted(everything.nodes) == ["plain-gpu", "shared"]


def test_from_nodes_sharing_label_must_be_true() -> None:
    labels = gfd()
    labels[keys.LABEL_SHARING] = "false"
    assert inv.from_nodes([node("n", labels)]).gpus == ()


def test_from_nodes_type_label_and_overrides() -> None:
    forced = gfd() | {keys.LABEL_GPU_TYPE: "rtx-3090-lab"}
    nodes = [
        node("a", forced),
        node("b", gfd(product="NVIDIA-A100-SXM4-80GB", memory="81920", count="1")),
        node("c", gfd(product="Tesla-T4", memory="15360", count="1")),
    ]
    result = inv.from_nodes(
        nodes,
        type_overrides={"NVIDIA-A100-SXM4-80GB": "A100-80G", "NVIDIA L4": "unused"},
    )
    by_node = {g.node: g.gpu_type for g in result.gpus}
    # The label wins; overrides match the product as labelled; otherwise the derived name.
    assert by_node == {"a": "rtx-3090-lab", "b": "A100-80G", "c": "T4"}


def test_from_nodes_override_keyed_by_nvml_name_matches_label_form() -> None:
    result = inv.from_nodes(
        [node("a", gfd())], type_overrides={"NVIDIA GeForce RTX 3090": "RTX-3090-24G"}
    )
    assert result.types() == ["RTX-3090-24G"]


def test_from_nodes_without_allocatable_leaves_capacity_unaccounted() -> None:
    result = inv.from_nodes([node("n", gfd(), cpu=None, memory=None)])
    assert result.nodes["n"] == NodeCapacity("n", None, None, None)


def _field_of(nodes: list[dict], **kwargs) -> InventoryError:
    with pytest.raises(InventoryError) as err:
        inv.from_nodes(nodes, **kwargs)
    return err.value


@pytest.mark.parametrize(
    ("labels", "annotations", "field", "words"),
    [
        (gfd(memory="24GB"), {}, keys.GFD_MEMORY, "24GB"),
        (gfd(memory="0"), {}, keys.GFD_MEMORY, ">= 1"),
        (gfd(count="two"), {}, keys.GFD_COUNT, "two"),
        (gfd(count="-1"), {}, keys.GFD_COUNT, "-1"),
        ({k: v for k, v in gfd().items() if k != keys.GFD_COUNT}, {}, keys.GFD_COUNT, "no"),
        ({k: v for k, v in gfd().items() if k != keys.GFD_MEMORY}, {}, keys.GFD_MEMORY, "no"),
        ({k: v for k, v in gfd().items() if k != keys.GFD_PRODUCT}, {}, keys.GFD_PRODUCT, "no"),
        (gfd(), {keys.ANN_NODE_GPUS: "[{"}, keys.ANN_NODE_GPUS, "JSON"),
        (gfd(), {keys.ANN_NODE_GPUS: '{"index": 0}'}, keys.ANN_NODE_GPUS, "list"),
        (gfd(), {keys.ANN_NODE_GPUS: "[1]"}, keys.ANN_NODE_GPUS, "object"),
        (
            gfd(count="2"),
            {keys.ANN_NODE_GPUS: json.dumps([{"index": 0, "uuid": "GPU-a"}])},
            keys.ANN_NODE_GPUS,
            "says 2",
        ),
        (
            gfd(count="2"),
            {
                keys.ANN_NODE_GPUS: json.dumps(
                    [{"index": 0, "uuid": "GPU-a"}, {"index": 0, "uuid": "GPU-b"}]
                )
            },
            keys.ANN_NODE_GPUS,
            "twice",
        ),
        (
            gfd(count="1"),
            {keys.ANN_NODE_GPUS: json.dumps([{"index": "0", "uuid": "GPU-a"}])},
            keys.ANN_NODE_GPUS,
            "index",
        ),
        (
            gfd(count="1"),
            {keys.ANN_NODE_GPUS: json.dumps([{"index": 0, "uuid": ""}])},
            keys.ANN_NODE_GPUS,
            "uuid",
        ),
        (
            gfd(count="1"),
            {keys.ANN_NODE_GPUS: json.dumps([{"index": 0, "uuid": "G", "memory_mib": "24G"}])},
            keys.ANN_NODE_GPUS,
            "memory_mib",
        ),
        (gfd() | {keys.LABEL_GPU_TYPE: "RTX 3090!"}, {}, keys.LABEL_GPU_TYPE, "RTX3090"),
    ],
)
def test_from_nodes_malformed_labels_name_node_and_label(
    labels: dict, annotations: dict, field: str, words: str
) -> None:
    err = _field_of([node("gpu-bad", labels, annotations)])
    assert err.field == field
    assert "gpu-bad" in err.message
    assert words in err.message


def test_from_nodes_malformed_allocatable() -> None:
    err = _field_of([node("gpu-q", gfd(), cpu="lots")])
    assert err.field == "status.allocatable.cpu"
    assert "gpu-q" in err.message
    err = _field_of([node("gpu-q", gfd(), memory="64 GB")])
    assert err.field == "status.allocatable.memory"


def test_from_nodes_malformed_objects() -> None:
    assert _field_of("nodes").field == "nodes"  # type: ignore[arg-type]
    assert _field_of([42]).field == "nodes[0]"
    assert _field_of([{"metadata": {}}]).field == "nodes[0].metadata.name"
    assert _field_of([{"metadata": {"name": "n", "labels": {"a": 1}}}]).field == "metadata.labels"
    assert _field_of([node("n", gfd()), node("n", gfd())]).field == "nodes[1].metadata.name"
    bad_override = _field_of([node("n", gfd())], type_overrides={"x": "no spaces allowed"})
    assert bad_override.field == "type_overrides['x']"


# --- from_nvml -----------------------------------------------------------------------------------


class FakeNvml:
    """Replaces the pynvml functions from_nvml uses; records init/shutdown."""

    def __init__(self, devices: list[tuple[object, object, int]], fail_init: bool = False) -> None:
        self.devices = devices
        self.fail_init = fail_init
        self.calls: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(pynvml, "nvmlInit", self.init)
        monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: self.calls.append("shutdown"))
        monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: len(self.devices))
        monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: i)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: self.devices[h][0])
        monkeypatch.setattr(pynvml, "nvmlDeviceGetUUID", lambda h: self.devices[h][1])
        monkeypatch.setattr(
            pynvml,
            "nvmlDeviceGetMemoryInfo",
            lambda h: SimpleNamespace(total=self.devices[h][2], free=0, used=0),
        )

    def init(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)


def test_from_nvml_reads_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(
        [
            ("NVIDIA GeForce RTX 3090", "GPU-1111", 24 * 2**30 + 12345),
            (b"NVIDIA A100-SXM4-80GB", b"GPU-2222", 80 * 2**30),  # older pynvml: bytes
        ]
    )
    fake.install(monkeypatch)
    result = inv.from_nvml("workstation")
    assert result.source == "nvml"
    assert result.error is None
    assert result.gpus == (
        GPU("workstation", 0, "GPU-1111", "NVIDIA GeForce RTX 3090", 24576, "RTX3090"),
        GPU("workstation", 1, "GPU-2222", "NVIDIA A100-SXM4-80GB", 81920, "A100-SXM4-80GB"),
    )
    assert result.nodes == {"workstation": NodeCapacity("workstation")}
    assert fake.calls == ["init", "shutdown"]


def test_from_nvml_defaults_to_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml([("NVIDIA L4", "GPU-3", 23034 * 2**20)]).install(monkeypatch)
    monkeypatch.setattr(inv.socket, "gethostname", lambda: "my-host")
    assert inv.from_nvml().gpus[0].node == "my-host"


def test_from_nvml_without_driver_is_empty_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([], fail_init=True)
    fake.install(monkeypatch)
    result = inv.from_nvml("box")
    assert result.gpus == ()
    assert result.empty
    assert result.error is not None
    assert result.error.startswith("no NVIDIA GPU found")
    assert "shutdown" not in fake.calls


def test_from_nvml_error_while_listing_still_shuts_down(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([("NVIDIA L4", "GPU-3", 2**34)])
    fake.install(monkeypatch)

    def broken(handle: int) -> str:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetUUID", broken)
    result = inv.from_nvml("box")
    assert result.gpus == ()
    assert result.error is not None and "no NVIDIA GPU found" in result.error
    assert fake.calls == ["init", "shutdown"]


def test_from_nvml_no_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml([]).install(monkeypatch)
    result = inv.from_nvml("box")
    assert result.gpus == ()
    assert result.error is not None and "no NVIDIA GPU found" in result.error


def test_from_nvml_real_library_on_this_machine_never_raises() -> None:
    # No GPU here: the real pynvml must give an empty inventory with a reason, not an exception.
    result = inv.from_nvml("here")
    assert result.source == "nvml"
    if result.empty:
        assert result.error


# --- simulated -----------------------------------------------------------------------------------


def test_simulated_string_one_node() -> None:
    result = sim.simulated("RTX3090:24576x4")
    assert result.simulated
    assert result.source == "simulated"
    assert [g.uuid for g in result.gpus] == [f"SIM-GPU-local-{i}" for i in range(4)]
    assert all(g.simulated and g.memory_mib == 24576 and g.node == "local" for g in result.gpus)
    assert result.gpus[0].product == "Simulated RTX3090"
    assert list(result.nodes) == ["local"]


def test_simulated_string_several_nodes_and_units() -> None:
    result = sim.simulated(" node-a=RTX3090:24576x2 , node-b=A100:80G x 8, node-a=T4:16GiB ")
    assert [(g.node, g.index, g.gpu_type) for g in result.on_node("node-a")] == [
        ("node-a", 0, "RTX3090"),
        ("node-a", 1, "RTX3090"),
        ("node-a", 2, "T4"),
    ]
    assert len(result.on_node("node-b")) == 8
    assert result.on_node("node-b")[0].memory_mib == 81920
    assert result.on_node("node-a")[2].memory_mib == 16384
    assert result.types() == ["A100", "RTX3090", "T4"]
    assert sorted(result.nodes) == ["node-a", "node-b"]


def test_simulated_count_defaults_to_one() -> None:
    assert len(sim.simulated("L4:23034").gpus) == 1


def test_simulated_list_form() -> None:
    result = sim.simulated(
        [
            {"node": "lab-1", "gpu_type": "RTX3090", "memory_mib": 24576, "count": 2,
             "product": "NVIDIA GeForce RTX 3090", "zone": "room-101"},
            {"gpu_type": "A100", "memory_mib": 81920},
        ]
    )  # fmt: skip
    assert [(g.node, g.uuid, g.product) for g in result.gpus] == [
        ("lab-1", "SIM-GPU-lab-1-0", "NVIDIA GeForce RTX 3090"),
        ("lab-1", "SIM-GPU-lab-1-1", "NVIDIA GeForce RTX 3090"),
        ("local", "SIM-GPU-local-0", "Simulated A100"),
    ]
    assert result.nodes["lab-1"].zone == "room-101"
    assert result.nodes["local"].zone is None
    assert sim.simulated({"gpu_type": "T4", "memory_mib": 15360}).gpus[0].gpu_type == "T4"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("", "simulated"),
        ("RTX3090", "simulated[0]"),
        ("RTX3090:lots", "simulated[0]"),
        ("RTX3090:24576x", "simulated[0]"),
        ("RTX3090:24576x4,,", "simulated[1]"),
        ("RTX3090:0", "simulated[0].memory_mib"),
        ("RTX3090:24576x0", "simulated[0].count"),
        ("RTX3090:24576x65", "simulated[0].count"),
        ("-bad=RTX3090:24576", "simulated[0].node"),
        ("RTX_3090!:24576", "simulated[0].gpu_type"),
        (".x:24576", "simulated[0].gpu_type"),
        ([], "simulated"),
        (42, "simulated"),
        ([{"gpu_type": "T4"}], "simulated[0].memory_mib"),
        ([{"memory_mib": 1}], "simulated[0].gpu_type"),
        ([{"gpu_type": "T4", "memory_mib": 1, "cuont": 2}], "simulated[0].cuont"),
        ([{"gpu_type": "T4", "memory_mib": "16G"}], "simulated[0].memory_mib"),
        ([{"gpu_type": "T4", "memory_mib": True}], "simulated[0].memory_mib"),
        ([{"gpu_type": "T4", "memory_mib": 1, "count": 2.0}], "simulated[0].count"),
        ([{"gpu_type": "T 4", "memory_mib": 1}], "simulated[0].gpu_type"),
        ([{"gpu_type": "T4", "memory_mib": 1, "node": ""}], "simulated[0].node"),
        ([{"gpu_type": "T4", "memory_mib": 1, "zone": 3}], "simulated[0].zone"),
        (["T4:1"], "simulated[0]"),
        (
            [
                {"gpu_type": "T4", "memory_mib": 1, "zone": "a"},
                {"gpu_type": "T4", "memory_mib": 1, "zone": "b"},
            ],
            "simulated[1].zone",
        ),
    ],
)
def test_simulated_bad_specs(spec: object, field: str) -> None:
    with pytest.raises(InventoryError) as err:
        sim.simulated(spec)  # type: ignore[arg-type]
    assert err.value.field == field
    if isinstance(spec, str) and field.endswith("]"):
        assert "RTX3090:24576x4" in err.value.message  # shows the expected form


# --- Inventory itself ----------------------------------------------------------------------------


def test_inventory_rejects_duplicates_and_fills_nodes() -> None:
    a = GPU("n", 0, "GPU-a", "p", 1, "T4")
    with pytest.raises(InventoryError) as err:
        inv.Inventory(gpus=(a, GPU("n", 0, "GPU-b", "p", 1, "T4")), source="nvml")
    assert err.value.field == "index"
    with pytest.raises(InventoryError) as err:
        inv.Inventory(gpus=(a, GPU("m", 0, "GPU-a", "p", 1, "T4")), source="nvml")
    assert err.value.field == "uuid"
    with pytest.raises(InventoryError) as err:
        inv.Inventory(source="cloud")
    assert err.value.field == "source"
    with pytest.raises(InventoryError):
        inv.Inventory(nodes={"x": NodeCapacity("y")}, source="nvml")
    filled = inv.Inventory(gpus=[a], source="nvml")  # type: ignore[arg-type]
    assert filled.gpus == (a,)
    assert filled.nodes == {"n": NodeCapacity("n")}
    assert inv.Inventory().empty


def test_one_inconsistent_node_is_skipped_and_reported_not_fatal() -> None:
    """Labels say 3 GPUs, the agent published 2: that node is left out, with why; the rest
    of the cluster is read as usual (strict mode still raises, naming the node)."""
    published = [{"index": i, "uuid": f"GPU-bad-{i}"} for i in range(2)]
    bad = node("gpu-bad", gfd(count="3"), {keys.ANN_NODE_GPUS: json.dumps(published)})
    twin = node("gpu-twin", gfd(count="1"), {keys.ANN_NODE_GPUS: json.dumps(published[:1])})
    good = node("gpu-good", gfd(count="2"))
    with pytest.raises(InventoryError, match="gpu-bad"):
        inv.from_nodes([bad, good])
    result = inv.from_nodes([bad, good, node("gpu-ok", gfd(count="1")), twin], skip_bad_nodes=True)
    assert sorted(result.nodes) == ["gpu-good", "gpu-ok", "gpu-twin"]
    assert len(result.gpus) == 4
    assert [name for name, _ in result.skipped] == ["gpu-bad"]
    assert "says 3" in result.skipped[0][1]
    # A node repeating a GPU another node already has is left out too.
    again = node("gpu-again", gfd(count="1"), {keys.ANN_NODE_GPUS: json.dumps(published[:1])})
    result = inv.from_nodes([twin, again], skip_bad_nodes=True)
    assert list(result.nodes) == ["gpu-twin"]
    assert result.skipped[0][0] == "gpu-again" and "GPU-bad-0" in result.skipped[0][1]
