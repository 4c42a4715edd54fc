"""The contract every task type fulfils: head, labels, loss, decoding and metric inputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from data_utils.task_def import TaskDef, TaskType, TaskTypeSpec
from mt_dnn.loss import stable_kl

if TYPE_CHECKING:
    from mt_dnn.batch import Batch
    from mt_dnn.loss import Criterion


@dataclass(frozen=True)
class SANOptions:
    """The ``--answer_*`` options of the SAN answer module (SPEC §4)."""

    num_turn: int = 5
    mem_type: int = 1
    mem_drop_p: float = 0.1
    mem_cum_type: str = "simple"
    weight_norm_on: bool = False
    att_hidden_size: int = 128
    sum_att_type: str = "bilinear"
    max_answer_len: int = 10


@dataclass(frozen=True)
class DecodeOptions:
    """Run options that decoding reads (span tasks: ``--max_answer_len``)."""

    max_answer_len: int = 10


@dataclass(frozen=True)
class HeadContext:
    """What a head builder needs to know about the shared encoder and the run's options."""

    hidden_size: int
    dropout_p: float
    san: SANOptions = field(default_factory=SANOptions)
    vb_dropout: bool = True
    sep_token_id: int | None = None


@dataclass
class EncoderFeatures:
    """The shared encoder's output for one batch, as every head receives it."""

    sequence_output: torch.Tensor  # [N, L, H]
    pooled_output: torch.Tensor  # [N, H]
    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    embedding_output: torch.Tensor | None = None  # [N, L, H], what the encoder layers received


@dataclass
class Decoded:
    """Predictions of one batch: one prediction, score and gold per sample (not per row).

    A sample's score is a number (regression, span margin) or a list (class or candidate
    probabilities); score files flatten the lists.
    """

    uids: list[str]
    predictions: list[Any]
    scores: list[Any]
    golds: list[Any]


@dataclass(frozen=True)
class Prediction:
    """One example's prediction as the Python API returns it (``mt_dnn.api``).

    ``label``: the label name (the class id when the YAML names no labels), the score of a
    regression, the index of the best hypothesis of a ranking, or one tag per word.
    ``score``: the probability of ``label`` or the regression score (None for tags).
    ``probabilities``: per label name (classification) or per hypothesis (ranking), else None.
    """

    label: Any
    score: float | None = None
    probabilities: dict[Any, float] | list[float] | None = None


class TaskHandler:
    """Behaviour of one task type; a subclass registers itself with ``@register_task_handler``."""

    task_type: ClassVar[TaskType]
    # Whether predictions map to GLUE submission rows (one label or score per example).
    glue_submission: ClassVar[bool] = False
    # What the YAML loader knows of the type (label space, default losses); None for the built-in
    # types, whose specs live in data_utils/task_def.py because preprocessing reads YAML files
    # without importing the training code. A type added from outside sets it.
    spec: ClassVar[TaskTypeSpec | None] = None

    def build_head(self, task_def: TaskDef, ctx: HeadContext) -> nn.Module:
        """The task's output layer: ``head(features: EncoderFeatures) -> logits``."""
        raise NotImplementedError

    def prepare_labels(self, samples: list[dict], seq_len: int) -> torch.Tensor:
        """Label tensor of a batch from its JSON samples."""
        raise NotImplementedError

    def compute_loss(self, criterion: Criterion, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The task loss of a batch under ``criterion``."""
        return criterion(logits, batch.labels)

    def distill_targets_view(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Logits laid out as [B, C] for distribution losses (KD, SMART)."""
        return logits

    def adversarial_ascent_loss(self, adv_view: torch.Tensor, clean_view: torch.Tensor) -> torch.Tensor:
        """SMART's ascent objective between perturbed and clean views (batch sum of the stable KL)."""
        return stable_kl(adv_view, clean_view, reduce=False)

    def adversarial_pair(self, clean_view: torch.Tensor, adv_view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean and perturbed views as the task's ``adv_loss`` takes them."""
        return clean_view, adv_view

    def decode(self, logits: torch.Tensor, batch: Batch, options: DecodeOptions = DecodeOptions()) -> Decoded:
        """Predictions, scores and golds of a batch, in sample order."""
        raise NotImplementedError

    def finalize(self, decoded: Decoded, task_def: TaskDef) -> Decoded:
        """Merge per-row results of a whole dataset (span tasks join windows); identity by default."""
        return decoded

    def fit_decoding(self, decoded: Decoded) -> dict[str, Any]:
        """Decoding settings chosen on a labelled (dev) split, also applied to the splits scored after it
        (SQuAD v2: the null-answer threshold); none by default."""
        return {}

    def apply_decoding(self, decoded: Decoded, settings: dict[str, Any], task_def: TaskDef) -> tuple[Decoded, dict[str, Any]]:
        """``decoded`` under ``settings`` from ``fit_decoding`` (empty: none were chosen), and the settings
        used, which the score file records; identity by default."""
        return decoded, settings

    def present(self, prediction: Any, score: Any, task_def: TaskDef) -> Prediction:
        """One decoded sample as the Python API returns it; by default the prediction and a numeric score as they are."""
        return Prediction(prediction, float(score) if isinstance(score, (int, float)) else None)
