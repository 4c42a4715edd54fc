"""The shared encoder: loaded from a Hugging Face hub id, a local folder or an MT-DNN ``.pt`` file.

``--bert_dropout_p`` and ``--num_hidden_layers`` apply to each source alike; ``position_limit``
says how many tokens the loaded encoder takes; ``initial_network`` is the network a training
run starts from (the encoder, one new head per task, and the heads an MT-DNN checkpoint names).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from transformers import AutoConfig, AutoModel, BertConfig, BertModel, PretrainedConfig, PreTrainedModel

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TaskDef
from mt_dnn.checkpoint import encoder_config_from_checkpoint, is_mtdnn_checkpoint, load_mtdnn_checkpoint
from mt_dnn.matcher import SANBertNetwork
from mt_dnn.options import ModelOptions
from mt_dnn.sources import check_model_source
from mt_dnn.state_keys import check_state_keys, encoder_state, in_cut_layers

logger = logging.getLogger(__name__)


def _apply_encoder_options(config: PretrainedConfig, opts: ModelOptions) -> PretrainedConfig:
    """``--bert_dropout_p`` and ``--num_hidden_layers`` applied to an encoder config."""
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(config, key):
            setattr(config, key, opts.bert_dropout_p)
    if opts.num_hidden_layers > config.num_hidden_layers:
        logger.warning(
            "--num_hidden_layers %d: the encoder has only %d layers; all are used", opts.num_hidden_layers, config.num_hidden_layers
        )
    elif opts.num_hidden_layers > 0:
        config.num_hidden_layers = opts.num_hidden_layers
    return config


def load_encoder(opts: ModelOptions) -> PreTrainedModel:
    """The shared encoder from a hub id, a local folder or an MT-DNN ``.pt`` file."""
    source = opts.init_checkpoint
    if is_mtdnn_checkpoint(source):
        checkpoint = load_mtdnn_checkpoint(source)
        config = encoder_config_from_checkpoint(checkpoint)
        depth = config.num_hidden_layers
        config = _apply_encoder_options(config, opts)
        config._attn_implementation = opts.attn_implementation
        encoder = AutoModel.from_config(config) if not isinstance(config, BertConfig) else BertModel(config)
        state = encoder_state(checkpoint["state"])
        expected = {k for k in encoder.state_dict() if not k.endswith("position_ids")}
        missing = sorted(expected - set(state))
        # Layers cut by --num_hidden_layers are dropped on purpose, not unexpected.
        unexpected = sorted(k for k in set(state) - expected if not in_cut_layers(k, config.num_hidden_layers, depth))
        check_state_keys(missing, unexpected, source, what="encoder key")
        encoder.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
        return _with_checkpointing(encoder, opts)
    check_model_source(source, "--init_checkpoint", f"cannot load encoder {source!r}")
    try:
        config = AutoConfig.from_pretrained(source, cache_dir=opts.transformer_cache)
    except (OSError, ValueError) as err:  # missing files, offline hub, a malformed repo id
        raise MTDNNInputError(f"cannot load encoder {source!r}: {str(err).splitlines()[0]}") from None
    config = _apply_encoder_options(config, opts)
    try:
        try:
            encoder = AutoModel.from_pretrained(
                source, config=config, cache_dir=opts.transformer_cache, attn_implementation=opts.attn_implementation
            )
        except (ValueError, ImportError) as err:
            if opts.attn_implementation != "sdpa":  # asked for by name: say why it cannot be had
                raise MTDNNInputError(f"--attn_implementation {opts.attn_implementation}: {str(err).splitlines()[0]}") from None
            # Architectures without an SDPA implementation fall back to their default attention.
            encoder = AutoModel.from_pretrained(source, config=config, cache_dir=opts.transformer_cache)
    except OSError as err:  # a config without a weights file, a download that failed
        raise MTDNNInputError(f"cannot load encoder {source!r}: {str(err).splitlines()[0]}") from None
    return _with_checkpointing(encoder, opts)


def _with_checkpointing(encoder: PreTrainedModel, opts: ModelOptions) -> PreTrainedModel:
    """``encoder`` recomputing its layers' activations in the backward pass under ``--gradient_checkpointing``."""
    if opts.gradient_checkpointing:
        if not encoder.supports_gradient_checkpointing:
            raise MTDNNInputError(f"--gradient_checkpointing: {type(encoder).__name__} does not support it")
        if hasattr(encoder, "activation_checkpointing_enable"):  # transformers 5's name
            encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return encoder


@dataclass(frozen=True)
class EncoderLimits:
    """What every input row must fit: positions, vocabulary, token types (None: no limit to check)."""

    positions: int | None
    vocab_size: int | None
    type_vocab_size: int | None


def encoder_limits(encoder: PreTrainedModel) -> EncoderLimits:
    """The limits of ``encoder``; type ids are unchecked when it ignores them (one type: RoBERTa)."""
    embeddings = encoder.get_input_embeddings()
    types = getattr(encoder.config, "type_vocab_size", 0)
    return EncoderLimits(
        position_limit(encoder), getattr(embeddings, "num_embeddings", None), types if types > 1 else None
    )


def position_limit(encoder: PreTrainedModel) -> int | None:
    """The most tokens ``encoder`` takes: its absolute position table (less RoBERTa's padding offset); None if unbounded."""
    config = encoder.config
    size = getattr(config, "max_position_embeddings", None)
    if not isinstance(size, int) or size <= 0 or getattr(config, "position_biased_input", True) is False:
        return None  # relative positions only (DeBERTa v2/v3): no table to run past
    padding_idx = getattr(getattr(encoder, "embeddings", None), "padding_idx", None)
    return size - (padding_idx + 1) if isinstance(padding_idx, int) else size


def initial_network(model_opts: ModelOptions, task_defs: list[TaskDef], sep_token_id: int | None, resume: bool) -> SANBertNetwork:
    """The encoder with one head per task; an MT-DNN ``--init_checkpoint`` gives weights (heads by task name)."""
    network = SANBertNetwork(load_encoder(model_opts), task_defs, model_opts, sep_token_id=sep_token_id)
    if is_mtdnn_checkpoint(model_opts.init_checkpoint) and not resume:
        # A saved run contributes weights only, never options.
        source = load_mtdnn_checkpoint(model_opts.init_checkpoint)
        source_tasks = [task["name"] for task in (source.get("config") or {}).get("task_defs", [])]
        fresh = network.load_weights(source["state"], source_tasks)
        if fresh:
            logger.info("heads not in %s start fresh: %s", model_opts.init_checkpoint, ", ".join(fresh))
    return network
