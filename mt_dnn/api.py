"""Python API: load a trained MT-DNN model once, then predict labels of raw text with any of its heads.

    from mt_dnn import MTDNNPredictor

    predictor = MTDNNPredictor.from_checkpoint("checkpoint/model_2.pt")  # or an export folder (scripts/export_hf.py)
    predictor.tasks                                                       # ['rte', 'stsb', ...]
    [p.label for p in predictor.predict("rte", ["A man sleeps."], ["Nobody sleeps."])]  # ['not_entailment']

Texts are tokenized with the checkpoint's own tokenizer by its task's data format, exactly as
``prepro_std.py`` tokenizes canonical rows; the network runs and decodes as ``predict.py`` does
(``mt_dnn.inference``), and each task type's handler turns a decoded example into a ``Prediction``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from data_utils.errors import MTDNNInputError
from data_utils.features import EncodeOptions, FeatureEncoder, wants_own_lowercasing
from data_utils.formats import get_data_format
from data_utils.task_def import DATASET_ALIASES, TaskDef, task_name_of
from mt_dnn.batch import Item
from mt_dnn.batcher import Collater, build_eval_loader
from mt_dnn.checkpoint import RunCheckpoint, load_run_checkpoint
from mt_dnn.encoder import position_limit
from mt_dnn.export import load_export, recorded_max_seq_len
from mt_dnn.inference import EvalSettings, predict_dataset
from mt_dnn.sources import load_tokenizer
from mt_dnn.tasks import Prediction, get_task_handler

__all__ = ["MTDNNPredictor", "Prediction", "head_name"]

# prepro_std.py's default --max_seq_len, for checkpoints that do not record the run's.
DEFAULT_MAX_SEQ_LEN = 512


def head_name(names: list[str], dataset: str) -> str | None:
    """The head among ``names`` that a task or dataset name (``mnli_matched`` → ``mnli``) belongs to, if any."""
    name = dataset if dataset in names else task_name_of(dataset)
    if name not in names and DATASET_ALIASES.get(name) in names:
        name = DATASET_ALIASES[name]
    return name if name in names else None


def load_model(source: str | Path, device: torch.device | str = "cpu") -> RunCheckpoint:
    """The network of a ``train.py`` checkpoint (``.pt``) or of an export folder, in eval mode on ``device``."""
    path = Path(source)
    if path.is_dir():
        return load_export(path, device)
    return load_run_checkpoint(path, device)


class _Examples(torch.utils.data.Dataset):
    """Checked tokenized samples held in memory, as ``build_eval_loader`` takes a ``TaskDataset``."""

    def __init__(self, samples: list[dict], lengths: list[int], task_def: TaskDef):
        self.task_def = task_def
        self.samples = samples
        self._lengths = lengths

    def lengths(self) -> list[int]:
        return list(self._lengths)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item:
        return Item(self.task_def.name, self.task_def, self.samples[index])


def _texts(values: Any, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
        raise MTDNNInputError(f"{what} must be a list of strings")
    return list(values)


def _hypotheses_per_premise(hypotheses: Any, n: int) -> list[list[str]]:
    """Each premise's hypotheses: none, one string, or a list of candidates (ranking)."""
    if hypotheses is None:
        return [[] for _ in range(n)]
    if isinstance(hypotheses, str) or not isinstance(hypotheses, Sequence):
        raise MTDNNInputError("hypotheses must be a list with one entry per premise")
    if len(hypotheses) != n:
        raise MTDNNInputError(f"{n} premises but {len(hypotheses)} hypotheses: give one entry per premise")
    return [[entry] if isinstance(entry, str) else _texts(entry, f"hypotheses[{i}]") for i, entry in enumerate(hypotheses)]


class MTDNNPredictor:
    """A trained network with its tokenizer: ``predict(task, premises, hypotheses)`` → one ``Prediction`` per premise.

    What a call means per task type (the ``Prediction`` fields are documented there):

    - classification (with or without SAN): ``hypotheses`` is None for single-sentence tasks (CoLA, SST-2), else
      one string per premise; ``label`` is the label name, ``probabilities`` maps every label to its probability;
    - regression: as classification; ``label`` and ``score`` are the predicted score;
    - ranking (``PremiseAndMultiHypothesis``): one list of candidate hypotheses per premise, all of one premise
      scored together; ``label`` is the index of the best candidate, ``probabilities`` one per candidate (they
      sum to 1 over a premise's candidates); premises may have different numbers of candidates;
    - sequence labelling: each premise is a sentence, split at whitespace into words, no hypotheses; ``label``
      is one tag per word (words past ``max_seq_len`` sub-tokens, or that tokenize to nothing, get none);
    - span extraction is refused with an error: its answers need context windows (use ``predict.py``).
    """

    def __init__(
        self,
        run: RunCheckpoint,
        source: str,
        tokenizer: str | None = None,
        max_seq_len: int | None = None,
        do_lower_case: bool = False,
    ):
        self.run = run
        self.source = source
        self._tokenizer_source = tokenizer
        self._do_lower_case = do_lower_case
        limit = position_limit(run.network.bert)
        if max_seq_len is not None and limit is not None and max_seq_len > limit:
            raise MTDNNInputError(f"max_seq_len {max_seq_len} is more than the encoder's {limit} positions", source)
        self.max_seq_len = max_seq_len or min(DEFAULT_MAX_SEQ_LEN, limit or DEFAULT_MAX_SEQ_LEN)
        self.device = next(run.network.parameters()).device
        self.settings = EvalSettings.of_run(run.model_opts, run.train_opts, self.device)
        self._encoder: FeatureEncoder | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        tokenizer: str | None = None,
        max_seq_len: int | None = None,
        do_lower_case: bool = False,
    ) -> MTDNNPredictor:
        """Load ``model_<epoch>.pt`` of ``train.py`` or an export folder once.

        ``tokenizer`` overrides the one the checkpoint names (an export folder holds its own).
        ``max_seq_len`` and ``do_lower_case`` are ``prepro_std.py``'s options: set them as the
        features were made; ``max_seq_len`` defaults to the run's ``--max_seq_len`` (512 when the
        checkpoint does not record it). The tokenizer is loaded at the first ``predict``.
        """
        run = load_model(path, device)
        return cls(run, str(path), tokenizer, max_seq_len or recorded_max_seq_len(path), do_lower_case)

    @property
    def tasks(self) -> list[str]:
        """The model's tasks in head order."""
        return self.run.task_names

    def task_def(self, task: str) -> TaskDef:
        """The definition of a task, given its name or one of its datasets' (``mnli_matched`` → ``mnli``)."""
        name = head_name(self.tasks, task) if isinstance(task, str) else None
        if name is None:
            raise MTDNNInputError(f"task {task!r} has no head in this model (its tasks: {', '.join(self.tasks)})", self.source)
        return self.run.task_defs[self.tasks.index(name)]

    @property
    def feature_encoder(self) -> FeatureEncoder:
        """The tokenizer side of ``prepro_std.py`` with this model's tokenizer (loaded on first use)."""
        if self._encoder is None:
            source = self._tokenizer_source or self.run.tokenizer.get("name")
            if not source:
                raise MTDNNInputError("the checkpoint does not name its tokenizer: pass tokenizer=", self.source)
            tokenizer = load_tokenizer(str(source), None, "tokenizer")
            lowercase = wants_own_lowercasing(tokenizer, self._do_lower_case)
            self._encoder = FeatureEncoder(tokenizer, EncodeOptions(max_seq_len=self.max_seq_len, lowercase=lowercase))
        return self._encoder

    def encode(self, task: str, premises: Sequence[str], hypotheses: Sequence[Any] | None = None) -> list[dict]:
        """The tokenized samples ``prepro_std.py`` would write for these texts (uids ``"0"``, ``"1"``, …)."""
        task_def = self.task_def(task)
        premises = _texts(premises, "premises")
        per_premise = _hypotheses_per_premise(hypotheses, len(premises))
        data_format = get_data_format(task_def.data_format)
        rows = [data_format.unlabelled_row(str(i), p, h, task_def) for i, (p, h) in enumerate(zip(premises, per_premise))]
        if not rows:
            return []
        encoder = self.feature_encoder
        encoder.check_task(task_def)
        return list(data_format.features(encoder, rows, task_def))

    def predict(
        self, task: str, premises: Sequence[str], hypotheses: Sequence[Any] | None = None, batch_size: int = 32
    ) -> list[Prediction]:
        """One ``Prediction`` per premise, in order (see the class docstring for what each task type takes).

        With ``batch_size`` equal to the run's ``--batch_size_eval`` the same rows pad as in its evaluation,
        and the probabilities equal its score file bit for bit.
        """
        if batch_size < 1:
            raise MTDNNInputError("batch_size must be at least 1")
        task_def = self.task_def(task)
        samples = self.encode(task, premises, hypotheses)
        if not samples:
            return []
        return self.predict_samples(task_def, samples, batch_size)

    def predict_samples(self, task_def: TaskDef, samples: list[dict], batch_size: int = 32) -> list[Prediction]:
        """Predictions of already tokenized samples (``encode``'s output or lines of a ``prepro_std.py`` file)."""
        data_format = get_data_format(task_def.data_format)
        # A batch holds one number of hypotheses: premises with different numbers of candidates run apart.
        groups: dict[int, list[int]] = {}
        lengths = []
        for index, sample in enumerate(samples):
            try:
                length, _ = data_format.check_sample(sample, task_def)  # as TaskDataset checks a line; builds the mask
            except (ValueError, KeyError, TypeError) as err:
                raise MTDNNInputError(f"sample {index} of task {task_def.name}: {err}") from None
            lengths.append(length)
            groups.setdefault(len(data_format.token_rows(sample)), []).append(index)
        predictions: list[Prediction | None] = [None] * len(samples)
        handler = get_task_handler(task_def.task_type)
        for indices in groups.values():
            dataset = _Examples([samples[i] for i in indices], [lengths[i] for i in indices], task_def)
            collater = Collater(self.run.pad_token_id, self.max_seq_len, keep_samples=True)
            decoded = predict_dataset(self.run.network, build_eval_loader(dataset, batch_size, collater), task_def, self.settings)
            for index, prediction, score in zip(indices, decoded.predictions, decoded.scores):
                predictions[index] = handler.present(prediction, score, task_def)
        return predictions
