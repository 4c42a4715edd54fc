"""Task-definition registry: the enums of the original toolkit, a typed ``TaskDef``, and
``load_task_defs`` that validates a YAML file (SPEC §2).

Label maps live here too: ``TaskDef.encode_label`` turns a label as written in a canonical
TSV into the index (or float) that training uses, ``TaskDef.decode_label`` goes back.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

from data_utils.errors import MTDNNInputError
from data_utils.file_io import read_text


class TaskType(IntEnum):
    Classification = 1
    Regression = 2
    Ranking = 3
    SpanClassification = 4
    SpanClassificationYN = 5
    SeqenceLabeling = 6
    MaskLM = 7
    SpanSeqenceLabeling = 8
    SeqenceGeneration = 9
    SeqenceGenerationMRC = 10
    EncSeqenceGeneration = 11
    ClozeChoice = 12


class DataFormat(IntEnum):
    PremiseOnly = 1
    PremiseAndOneHypothesis = 2
    PremiseAndMultiHypothesis = 3
    Seqence = 4
    MLM = 5
    CLUE_CLASSIFICATION = 6
    CLUE_SPAN = 7
    CLUE_SEQ = 8
    CLUE_GEN = 9
    ClozeChoice = 10


class EncoderModelType(IntEnum):
    BERT = 1
    ROBERTA = 2
    XLNET = 3
    SAN = 4
    XLM = 5
    DEBERTA = 6
    ELECTRA = 7
    T5 = 8
    T5G = 9
    MSRT5G = 10
    MSRT5 = 11
    MSRLONGT5G = 12
    MSRLONGT5 = 13


class Metric(IntEnum):
    ACC = 0
    F1 = 1
    MCC = 2
    Pearson = 3
    Spearman = 4
    AUC = 5
    SeqEval = 7
    EmF1 = 8
    F1MAC = 9
    F1MIC = 10
    EmF12 = 11
    SeqEvalList = 12
    CMAT = 13
    SeqAcc = 14  # new: token accuracy of a tagging task (POS), X/CLS/SEP and padding ignored


class LossCriterion(IntEnum):
    CeCriterion = 0
    MseCriterion = 1
    RankCeCriterion = 2
    SpanCeCriterion = 3
    SeqCeCriterion = 4
    MlmCriterion = 5
    KlCriterion = 6
    SymKlCriterion = 7
    NsKlCriterion = 8
    NsSymKlCriterion = 9
    JSCriterion = 10
    HLCriterion = 11


@dataclass(frozen=True)
class TaskTypeSpec:
    """What the data side knows of a task type: its label space and its loss defaults.

    The training side (head, loss wiring, decoding, metric inputs) is the type's handler in
    ``mt_dnn/tasks/``; preprocessing tools load YAML files without importing it.
    """

    # The loss when a task's YAML sets none (None: the YAML must set ``loss``).
    default_loss: LossCriterion | None = None
    default_adv_loss: LossCriterion = LossCriterion.SymKlCriterion
    # Labels are real-valued scores, not class ids (no ``labels`` list allowed).
    real_valued: bool = False
    # The head has one output, so ``n_class`` must be 1 whatever ``labels`` lists.
    single_output: bool = False
    # Integer labels lie below this instead of below ``n_class`` (ranking: 0/1 relevance per candidate).
    label_id_bound: int | None = None
    # A soft label lists one probability per class.
    soft_label_per_class: bool = False
    # A row has one gold label and a score file n_class scores per uid (what calc_metrics.py reads).
    scored_per_row: bool = False


# The task types mt_dnn/tasks/ implements; a handler registered for another one adds its spec
# (preprocessing tools load YAML files without importing the training code).
TASK_TYPE_SPECS: dict[TaskType, TaskTypeSpec] = {
    TaskType.Classification: TaskTypeSpec(LossCriterion.CeCriterion, soft_label_per_class=True, scored_per_row=True),
    TaskType.Regression: TaskTypeSpec(
        LossCriterion.MseCriterion,
        default_adv_loss=LossCriterion.MseCriterion,
        real_valued=True,
        single_output=True,
        scored_per_row=True,
    ),
    TaskType.Ranking: TaskTypeSpec(LossCriterion.RankCeCriterion, single_output=True, label_id_bound=2),
    TaskType.SpanClassification: TaskTypeSpec(LossCriterion.SpanCeCriterion),
    TaskType.SpanClassificationYN: TaskTypeSpec(LossCriterion.SpanCeCriterion),
    TaskType.SeqenceLabeling: TaskTypeSpec(LossCriterion.SeqCeCriterion),
}


def register_task_type(task_type: TaskType, spec: TaskTypeSpec) -> None:
    """Let YAML files use ``task_type``, whose labels and defaults ``spec`` describes (called by the handler registry)."""
    TASK_TYPE_SPECS[TaskType(task_type)] = spec


# The data formats data_utils/formats/ implements; registering a format there adds it.
SUPPORTED_DATA_FORMATS: set[DataFormat] = {
    DataFormat.PremiseOnly,
    DataFormat.PremiseAndOneHypothesis,
    DataFormat.PremiseAndMultiHypothesis,
    DataFormat.Seqence,
    DataFormat.CLUE_SPAN,
}
UNSUPPORTED_METRICS = frozenset({Metric.SeqEvalList})
UNSUPPORTED_LOSSES = frozenset({LossCriterion.MlmCriterion})

# Spellings accepted besides the enum member names.
_ALIASES: dict[type[IntEnum], dict[str, str]] = {
    TaskType: {"Span": "SpanClassification", "SpanYN": "SpanClassificationYN", "SequenceLabeling": "SeqenceLabeling"},
    DataFormat: {"Sequence": "Seqence"},
}

DEFAULT_SPLITS = ("train", "dev", "test")
ACTIVATIONS = ("tanh", "gelu", "relu", "linear")

_REQUIRED_KEYS = ("n_class", "data_format", "task_type", "metric_meta", "enable_san")
_OPTIONAL_KEYS = ("labels", "split_names", "dropout_p", "loss", "kd_loss", "adv_loss", "actf")


@dataclass(frozen=True)
class TaskDef:
    """One task of a YAML task-definition file, validated and typed."""

    name: str
    n_class: int
    data_format: DataFormat
    task_type: TaskType
    metric_meta: tuple[Metric, ...]
    enable_san: bool
    labels: tuple[str, ...] | None = None
    split_names: tuple[str, ...] = DEFAULT_SPLITS
    dropout_p: float | None = None
    loss: LossCriterion = LossCriterion.CeCriterion
    kd_loss: LossCriterion = LossCriterion.MseCriterion
    adv_loss: LossCriterion = LossCriterion.SymKlCriterion
    actf: str | None = None

    @property
    def spec(self) -> TaskTypeSpec:
        """The data-side description of this task's type (label space, loss defaults)."""
        return TASK_TYPE_SPECS[self.task_type]

    @functools.cached_property
    def label_index(self) -> dict[str, int]:
        """Label string → index (position in ``labels``)."""
        return {label: index for index, label in enumerate(self.labels or ())}

    def encode_label(self, raw: str) -> int | float:
        """Map one label as written in a canonical TSV to its training value.

        Raises ``ValueError`` with a message naming the label; readers add file and line.
        """
        if self.spec.real_valued:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"regression score {raw!r} of task {self.name} is not a number") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"regression score {raw!r} of task {self.name} is not finite")
            return value
        if self.labels is not None:
            index = self.label_index.get(raw)
            if index is None:
                raise ValueError(f"label {raw!r} is not one of task {self.name}'s labels {list(self.labels)}")
            return index
        try:
            index = int(raw)
        except ValueError:
            raise ValueError(f"label {raw!r} of task {self.name} is not an integer class id") from None
        limit = self.spec.label_id_bound or self.n_class
        if not 0 <= index < max(limit, 1):
            raise ValueError(f"label {raw!r} of task {self.name} is out of range [0, {limit})")
        return index

    def decode_label(self, value: int | float) -> str | int | float:
        """Map a prediction back to what a label file holds: the label name, the class id, or the score."""
        if self.spec.real_valued:
            return float(value)
        if self.labels is not None:
            return self.labels[int(value)]
        return int(value)


def task_name_of(dataset: str) -> str:
    """The task a dataset belongs to: the prefix before the first ``_`` (``mnli_matched`` → ``mnli``)."""
    return dataset.split("_", 1)[0]


def _parse_enum(enum_cls: type[IntEnum], value: Any, fail) -> IntEnum:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        fail(f"expected a {enum_cls.__name__} name, got {value!r}")
    if isinstance(value, int):
        try:
            return enum_cls(value)
        except ValueError:
            fail(f"unknown {enum_cls.__name__} value {value!r}")
    name = _ALIASES.get(enum_cls, {}).get(value, value)
    try:
        return enum_cls[name]
    except KeyError:
        fail(f"unknown {enum_cls.__name__} {value!r}; expected one of {[m.name for m in enum_cls]}")
    raise AssertionError("unreachable")


class _Located:
    """A YAML mapping whose keys remember their line numbers (duplicate keys checked)."""

    def __init__(self, node: yaml.MappingNode, path: Path, what: str):
        self.values: dict[str, Any] = {}
        self.lines: dict[str, int] = {}
        self.value_nodes: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise MTDNNInputError(f"{what}: keys must be plain names", path, line)
            key = key_node.value
            value = _construct(value_node, path)
            if key in self.values:
                if self.values[key] != value:
                    raise MTDNNInputError(
                        f"{what}: key {key!r} given twice with different values "
                        f"(line {self.lines[key]}: {self.values[key]!r}, here: {value!r})",
                        path,
                        line,
                    )
                continue
            self.values[key] = value
            self.lines[key] = line
            self.value_nodes[key] = value_node


def _construct(node: yaml.Node, path: Path) -> Any:
    if isinstance(node, yaml.MappingNode):
        # Nested mappings are checked for repeated keys as well.
        _Located(node, path, "mapping")
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _build_task(name: str, body: _Located, path: Path, task_line: int) -> TaskDef:
    def fail(message: str, key: str | None = None) -> None:
        line = body.lines.get(key, task_line) if key else task_line
        where = f"task {name!r}" + (f", key {key!r}" if key else "")
        raise MTDNNInputError(f"{where}: {message}", path, line)

    values = body.values
    for key in values:
        if key not in _REQUIRED_KEYS and key not in _OPTIONAL_KEYS:
            fail(f"unknown key; expected one of {list(_REQUIRED_KEYS + _OPTIONAL_KEYS)}", key)
    for key in _REQUIRED_KEYS:
        if key not in values:
            fail(f"missing required key {key!r}")

    def enum_of(enum_cls: type[IntEnum], key: str) -> IntEnum:
        return _parse_enum(enum_cls, values[key], lambda message: fail(message, key))

    task_type = enum_of(TaskType, "task_type")
    spec = TASK_TYPE_SPECS.get(task_type)
    if spec is None:
        fail(f"task type {task_type.name} is not supported here", "task_type")
    data_format = enum_of(DataFormat, "data_format")
    if data_format not in SUPPORTED_DATA_FORMATS:
        fail(f"data format {data_format.name} is not supported here", "data_format")

    n_class = values["n_class"]
    if isinstance(n_class, bool) or not isinstance(n_class, int) or n_class < 1:
        fail(f"must be a positive integer, got {n_class!r}", "n_class")

    metrics_raw = values["metric_meta"]
    if isinstance(metrics_raw, str):
        metrics_raw = [metrics_raw]
    if not isinstance(metrics_raw, list) or not metrics_raw:
        fail("must be a non-empty list of metric names", "metric_meta")
    metrics = tuple(_parse_enum(Metric, m, lambda message: fail(message, "metric_meta")) for m in metrics_raw)
    for metric in metrics:
        if metric in UNSUPPORTED_METRICS:
            fail(f"metric {metric.name} is not supported here", "metric_meta")

    enable_san = values["enable_san"]
    if not isinstance(enable_san, bool):
        fail(f"must be true or false, got {enable_san!r}", "enable_san")

    labels = values.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not labels:
            fail("must be a non-empty list of label strings", "labels")
        labels = tuple(str(label) for label in labels)
        if len(set(labels)) != len(labels):
            fail("labels must be distinct", "labels")
        if not spec.single_output and n_class != len(labels):
            fail(f"n_class is {n_class} but {len(labels)} labels are listed", "n_class")
        if spec.real_valued:
            fail("a regression task has float labels; remove 'labels'", "labels")
    if spec.single_output and n_class != 1:
        fail(f"a {task_type.name} task has n_class 1, got {n_class}", "n_class")

    split_names = values.get("split_names", list(DEFAULT_SPLITS))
    if not isinstance(split_names, list) or not split_names or not all(isinstance(s, str) for s in split_names):
        fail("must be a non-empty list of split names", "split_names")

    dropout_p = values.get("dropout_p")
    if dropout_p is not None:
        if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0 <= dropout_p < 1:
            fail(f"must be a number in [0, 1), got {dropout_p!r}", "dropout_p")
        dropout_p = float(dropout_p)

    def loss_of(key: str, default: LossCriterion) -> LossCriterion:
        if key not in values:
            return default
        loss = enum_of(LossCriterion, key)
        if loss in UNSUPPORTED_LOSSES:
            fail(f"loss {loss.name} is not supported here", key)
        return loss

    if "loss" not in values and spec.default_loss is None:
        fail(f"task type {task_type.name} has no default loss: set 'loss'")
    loss = loss_of("loss", spec.default_loss)
    kd_loss = loss_of("kd_loss", LossCriterion.MseCriterion)
    adv_loss = loss_of("adv_loss", spec.default_adv_loss)

    actf = values.get("actf")
    if actf is not None and actf not in ACTIVATIONS:
        fail(f"unknown activation {actf!r}; expected one of {list(ACTIVATIONS)}", "actf")

    return TaskDef(
        name=name,
        n_class=n_class,
        data_format=data_format,
        task_type=task_type,
        metric_meta=metrics,
        enable_san=enable_san,
        labels=labels,
        split_names=tuple(split_names),
        dropout_p=dropout_p,
        loss=loss,
        kd_loss=kd_loss,
        adv_loss=adv_loss,
        actf=actf,
    )


def load_task_defs(path: str | Path) -> dict[str, TaskDef]:
    """Load and validate a YAML task-definition file; errors name file, line, task and key."""
    path = Path(path)
    if not path.is_file():
        raise MTDNNInputError("task definition file not found", path)
    try:
        root = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise MTDNNInputError(f"invalid YAML: {problem}", path, line) from None
    if root is None:
        raise MTDNNInputError("task definition file is empty", path)
    if not isinstance(root, yaml.MappingNode):
        raise MTDNNInputError("expected a mapping of task name → definition", path, root.start_mark.line + 1)
    tasks = _Located(root, path, "task list")
    defs: dict[str, TaskDef] = {}
    for name, node in tasks.value_nodes.items():
        line = tasks.lines[name]
        if "_" in name:
            raise MTDNNInputError(f"task name {name!r} must not contain '_' (file names are <task>_<split>)", path, line)
        if not isinstance(node, yaml.MappingNode):
            raise MTDNNInputError(f"task {name!r}: definition must be a mapping", path, line)
        defs[name] = _build_task(name, _Located(node, path, f"task {name!r}"), path, line)
    return defs


# Datasets scored by another task's head: the GLUE diagnostic set uses MNLI's.
DATASET_ALIASES = {"ax": "mnli"}


def get_task_def(task_defs: dict[str, TaskDef], dataset: str, task_def_path: str | Path) -> TaskDef:
    """The ``TaskDef`` of a dataset name (``rte``, ``mnli_matched``, ``scitail_001``, ``ax``) or a clear error."""
    task = task_name_of(dataset)
    if task not in task_defs and DATASET_ALIASES.get(task) in task_defs:
        task = DATASET_ALIASES[task]
    if task not in task_defs:
        raise MTDNNInputError(
            f"dataset {dataset!r}: task {task!r} is not defined (defined: {', '.join(sorted(task_defs))})",
            task_def_path,
        )
    return task_defs[task]


def task_def_to_dict(task_def: TaskDef) -> dict[str, Any]:
    """A JSON-safe dict of a ``TaskDef`` (enum names as strings), for config files and checkpoints."""
    return {
        "name": task_def.name,
        "n_class": task_def.n_class,
        "data_format": task_def.data_format.name,
        "task_type": task_def.task_type.name,
        "metric_meta": [m.name for m in task_def.metric_meta],
        "enable_san": task_def.enable_san,
        "labels": list(task_def.labels) if task_def.labels is not None else None,
        "split_names": list(task_def.split_names),
        "dropout_p": task_def.dropout_p,
        "loss": task_def.loss.name,
        "kd_loss": task_def.kd_loss.name,
        "adv_loss": task_def.adv_loss.name,
        "actf": task_def.actf,
    }


def task_def_from_dict(data: dict[str, Any]) -> TaskDef:
    """Inverse of ``task_def_to_dict``."""
    return TaskDef(
        name=data["name"],
        n_class=data["n_class"],
        data_format=DataFormat[data["data_format"]],
        task_type=TaskType[data["task_type"]],
        metric_meta=tuple(Metric[m] for m in data["metric_meta"]),
        enable_san=data["enable_san"],
        labels=tuple(data["labels"]) if data["labels"] is not None else None,
        split_names=tuple(data["split_names"]),
        dropout_p=data["dropout_p"],
        loss=LossCriterion[data["loss"]],
        kd_loss=LossCriterion[data["kd_loss"]],
        adv_loss=LossCriterion[data["adv_loss"]],
        actf=data["actf"],
    )


def parse_soft_label(raw: str) -> list[float]:
    """Parse a soft-label cell (a JSON list of probabilities) from a canonical TSV."""
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"soft label {raw!r} is not a JSON list of numbers")
    return [float(v) for v in value]
