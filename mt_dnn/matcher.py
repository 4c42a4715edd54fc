"""``SANBertNetwork``: one shared Hugging Face encoder and one head per task (SPEC §4).

Parameter names keep upstream's layout (``bert.*`` for the encoder, ``scoring_list.{i}.*``
for the heads) so released MT-DNN checkpoints and ``strip_model.py`` keep working.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from transformers import PreTrainedModel

from data_utils.task_def import TaskDef
from module.pooler import Pooler
from mt_dnn.options import ModelOptions
from mt_dnn.state_keys import BERT_CONFIG_KEYS, ENCODER_PREFIX, check_state_keys  # noqa: F401  (BERT_CONFIG_KEYS: importable from here, as before)
from mt_dnn.tasks import EncoderFeatures, HeadContext, get_task_handler

logger = logging.getLogger(__name__)


class SANBertNetwork(nn.Module):
    """Shared encoder → pooled [CLS] → one head per task, selected by ``task_id``."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        task_defs: list[TaskDef],
        opts: ModelOptions,
        sep_token_id: int | None = None,
    ):
        super().__init__()
        self.bert = encoder
        self.task_defs = list(task_defs)
        hidden_size = encoder.config.hidden_size
        # Encoders shipped without a pooler (DeBERTa, ELECTRA, …) get one new shared pooler.
        self.pooler = None if getattr(encoder, "pooler", None) is not None else Pooler(hidden_size, opts.pooler_actf)
        heads = []
        for task_def in self.task_defs:
            ctx = HeadContext(
                hidden_size=hidden_size,
                dropout_p=task_def.dropout_p if task_def.dropout_p is not None else opts.dropout_p,
                san=opts.san,
                vb_dropout=opts.vb_dropout,
                sep_token_id=sep_token_id,
            )
            heads.append(get_task_handler(task_def.task_type).build_head(task_def, ctx))
        self.scoring_list = nn.ModuleList(heads)
        self._init_new_weights(opts.init_ratio)
        if opts.update_bert_opt > 0:
            for param in self.bert.parameters():
                param.requires_grad_(False)

    def _init_new_weights(self, init_ratio: float) -> None:
        # As upstream (BERT's initializer): new linear layers ~ N(0, 0.02·init_ratio), zero bias.
        for part in (self.scoring_list, self.pooler):
            for module in part.modules() if part is not None else ():
                if isinstance(module, nn.Linear) and not parametrize.is_parametrized(module):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02 * init_ratio)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def encode(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        embedding_output: torch.Tensor | None = None,
    ) -> EncoderFeatures:
        """Run the shared encoder; ``embedding_output`` replaces what the embedding layer computes.

        The features carry the embedding output the layers saw, so SMART receives it as a value.
        """
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if getattr(self.bert.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        seen: list[torch.Tensor] = []

        def take_embedding(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
            # One call's hook, removed below: it hands the layers the given embedding, or records
            # the computed one. Works for any Hugging Face encoder with an ``embeddings`` module.
            seen.append(output if embedding_output is None else embedding_output)
            return embedding_output

        handle = self.bert.embeddings.register_forward_hook(take_embedding)
        try:
            output = self.bert(**kwargs)
        finally:
            handle.remove()
        sequence_output = output.last_hidden_state
        pooled = self.pooler(sequence_output) if self.pooler is not None else output.pooler_output
        return EncoderFeatures(sequence_output, pooled, input_ids, token_type_ids, attention_mask, seen[0])

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        task_id: int,
        embedding_output: torch.Tensor | None = None,
        return_embedding: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits of task ``task_id`` for one batch; with ``return_embedding``, ``(logits, embedding output)``."""
        features = self.encode(input_ids, token_type_ids, attention_mask, embedding_output)
        logits = self.scoring_list[task_id](features)
        return (logits, features.embedding_output) if return_embedding else logits

    def task_id(self, task_name: str) -> int:
        """The head index of a task (its position in ``task_defs``)."""
        for index, task_def in enumerate(self.task_defs):
            if task_def.name == task_name:
                return index
        raise KeyError(f"the network has no head for task {task_name!r}")

    def load_weights(self, state: dict[str, torch.Tensor], source_tasks: list[str] | None) -> list[str]:
        """Load weights only (``--init_checkpoint`` of a saved run); returns the tasks whose heads start fresh.

        The encoder itself came from the same file through ``load_encoder``; here come the heads,
        matched by task name (``source_tasks`` lists the checkpoint's heads in order; a checkpoint
        that does not name its tasks contributes no head), and a shared pooler when both have one.
        """
        source_index = {name: index for index, name in enumerate(source_tasks or [])}
        own = ("scoring_list.", ENCODER_PREFIX)
        selected = {key: value for key, value in state.items() if not key.startswith(own)}
        fresh = []
        for index, name in enumerate(task_def.name for task_def in self.task_defs):
            if name not in source_index:
                fresh.append(name)
                continue
            prefix = f"scoring_list.{source_index[name]}."
            selected.update(
                {f"scoring_list.{index}.{key[len(prefix):]}": value for key, value in state.items() if key.startswith(prefix)}
            )
        result = self.load_state_dict(selected, strict=False)
        missing = [key for key in result.missing_keys if not key.startswith(own)]
        check_state_keys(missing, result.unexpected_keys, None, prefix="checkpoint does not fit the network")
        return fresh
