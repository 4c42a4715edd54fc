"""A task type registered from outside the package trains and evaluates through train.py (README "Extending")."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_train import train_args
from torch import nn

from data_utils import task_def as task_def_module
from data_utils.task_def import LossCriterion, TaskType, TaskTypeSpec
from mt_dnn.tasks import TASK_HANDLERS, Decoded, DecodeOptions, HeadContext, TaskHandler, register_task_handler
from train import main as train_main

FEATURES = Path(__file__).parent / "data" / "features"


class MeanTokenHead(nn.Module):
    """Mean of the real tokens' states → linear: a head the package does not ship."""

    def __init__(self, hidden_size: int, n_class: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, n_class)

    def forward(self, features) -> torch.Tensor:
        mask = features.attention_mask.unsqueeze(-1).to(features.sequence_output.dtype)
        mean = (features.sequence_output * mask).sum(dim=1) / mask.sum(dim=1)
        return self.proj(mean)


@pytest.fixture
def outside_registry():
    """Registers a handler for ClozeChoice (an upstream type this package does not implement), then undoes it."""
    handlers = dict(TASK_HANDLERS)
    specs = dict(task_def_module.TASK_TYPE_SPECS)

    @register_task_handler
    class MeanTokenChoiceHandler(TaskHandler):
        task_type = TaskType.ClozeChoice
        spec = TaskTypeSpec(default_loss=LossCriterion.CeCriterion)

        def build_head(self, task_def, ctx: HeadContext) -> nn.Module:
            return MeanTokenHead(ctx.hidden_size, task_def.n_class)

        def prepare_labels(self, samples, seq_len):
            return torch.tensor([int(s["label"]) for s in samples], dtype=torch.long)

        def decode(self, logits, batch, options: DecodeOptions = DecodeOptions()) -> Decoded:
            probs = torch.softmax(logits.float(), dim=-1)
            return Decoded(list(batch.uids), probs.argmax(-1).tolist(), probs.tolist(), batch.labels.tolist())

    yield MeanTokenChoiceHandler
    TASK_HANDLERS.clear()
    TASK_HANDLERS.update(handlers)
    task_def_module.TASK_TYPE_SPECS.clear()
    task_def_module.TASK_TYPE_SPECS.update(specs)


def test_a_task_type_registered_outside_the_package_trains(outside_registry, tiny_model_dir, tmp_path):
    yaml_path = tmp_path / "choice.yml"
    # No `loss` key: the default loss of the handler's spec applies.
    yaml_path.write_text(
        "choice:\n  data_format: PremiseAndOneHypothesis\n  task_type: ClozeChoice\n  n_class: 2\n"
        "  metric_meta: [ACC]\n  enable_san: false\n  dropout_p: 0.0\n",
        encoding="utf-8",
    )
    data_dir = tmp_path / "features"
    data_dir.mkdir()
    for split in ("train", "dev"):
        shutil.copy(FEATURES / "rte_train.json", data_dir / f"choice_{split}.json")
    out = tmp_path / "out"
    argv = train_args(tiny_model_dir, data_dir, out, "--epochs", "1", datasets="choice")
    argv[argv.index("--task_def") + 1] = str(yaml_path)
    train_main(argv)
    checkpoint = torch.load(out / "model_0.pt", weights_only=True)
    assert checkpoint["config"]["task_defs"][0]["task_type"] == "ClozeChoice"
    assert checkpoint["config"]["task_defs"][0]["loss"] == "CeCriterion"
    assert checkpoint["updates"] > 0
    assert "scoring_list.0.proj.weight" in checkpoint["state"]
    scores = json.loads((out / "choice_dev_scores_epoch_0.json").read_text(encoding="utf-8"))
    n_rows = sum(1 for line in (data_dir / "choice_dev.json").open() if line.strip())
    assert len(scores["uids"]) == n_rows and 0.0 <= scores["metrics"]["ACC"] <= 100.0


def test_without_the_registration_the_yaml_is_refused(tmp_path):
    from data_utils.errors import MTDNNInputError
    from data_utils.task_def import load_task_defs

    yaml_path = tmp_path / "choice.yml"
    yaml_path.write_text(
        "choice:\n  data_format: PremiseOnly\n  task_type: ClozeChoice\n  n_class: 2\n  metric_meta: [ACC]\n  enable_san: false\n",
        encoding="utf-8",
    )
    with pytest.raises(MTDNNInputError, match="ClozeChoice is not supported here"):
        load_task_defs(yaml_path)
