"""The flags of ``train.py`` (SPEC §9) and their split into the typed option objects.

``build_parser`` defines every flag with its default; ``options_from_args`` checks flag
combinations and builds ``RunOptions``, ``DataOptions``, ``ModelOptions``, ``TrainOptions`` and
``AdvOptions``, which ``train.py`` passes down explicitly.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from dataclasses import dataclass, fields
from typing import Any

import torch

from data_utils.errors import MTDNNInputError
from mt_dnn.checkpoint import RESUME_FILE
from mt_dnn.cpu_dropout import CPU_DROPOUTS
from mt_dnn.host_memory import CPU_ALLOCATORS, DEFAULT_PRIMITIVE_CACHE
from mt_dnn.optim import check_scheduler_type, optimizer_factory
from mt_dnn.options import (
    COMPILED_KERNEL_MIN_UPDATES,
    OPTIMIZER_KERNELS,
    PRECISIONS,
    AdvOptions,
    DataOptions,
    ModelOptions,
    TrainOptions,
    resolve_attention,
    resolve_pad_to_multiple_of,
    resolve_precision,
)
from mt_dnn.perturbation import check_p_norm
from mt_dnn.tasks import SANOptions

logger = logging.getLogger("mt_dnn")


def str2bool(value: str) -> bool:
    """argparse type for ``true/false`` flags such as ``--vb_dropout``."""
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def int_or_auto(value: str) -> int | str:
    """argparse type for flags that take a whole number or ``auto`` (resolved once the device is known)."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got {value!r}") from None


NO_EFFECT = "accepted for compatibility with upstream scripts; no effect here"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` layout: the description as written (the module docstring), every flag's default.

    Like ``ArgumentDefaultsHelpFormatter`` it appends ``(default: …)``, except where the help
    already states the default itself, and never ``(default: None)``: a flag whose default is
    None says in words what happens without it.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "%(default)" in help_text or "(default:" in help_text:
            return help_text
        if action.default is None or action.default is argparse.SUPPRESS:
            return help_text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return help_text
        return f"{help_text} (default: %(default)s)"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose errors are one ``error: …`` line and exit 2, not a usage block of 95 flags."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} ({self.prog} --help lists every flag)", file=sys.stderr)
        sys.exit(2)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """Every flag of SPEC §9 with its default and a help line (``train.py --help``)."""
    p = OneLineErrorParser(description=description, formatter_class=HelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument(
        "--log_file", default="mt-dnn-train.log", help="log file, also echoed to stderr; a relative path is inside --output_dir"
    )
    data.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log training loss, learning rate and evaluation metrics to TensorBoard (needs the tensorboard package)",
    )
    data.add_argument(
        "--tensorboard_logdir", default="tensorboard_logdir", help="TensorBoard folder of --tensorboard, inside --output_dir"
    )
    data.add_argument(
        "--init_checkpoint",
        default="bert-base-uncased",
        help="the encoder to start from: a Hugging Face model id or folder, or an MT-DNN .pt checkpoint "
        "(its encoder and the heads of tasks it knows by name; weights only, never its options)",
    )
    data.add_argument(
        "--data_dir",
        default="data/canonical_data/bert-base-uncased",
        help="folder of the tokenized <dataset>_<split>.json files written by prepro_std.py",
    )
    data.add_argument("--task_def", default="experiments/glue/glue_task_def.yml", help="YAML file of task definitions")
    data.add_argument(
        "--train_datasets",
        default="mnli",
        help="comma-separated datasets to train on, each read from <data_dir>/<name>_train.json; the part of a name "
        "before its first '_' is its task in --task_def, and the first dataset is the main task of --mix_opt/--ratio",
    )
    data.add_argument(
        "--test_datasets",
        default="mnli_matched,mnli_mismatched",
        help="comma-separated datasets evaluated after every epoch: <name>_dev.json and <name>_test.json, "
        "each one that exists; score files go to --output_dir",
    )
    data.add_argument(
        "--glue_format_on",
        action="store_true",
        help="also write GLUE submission files (<dataset>_<split>_scores_*.tsv) for tasks that have one",
    )
    data.add_argument(
        "--mkd_opt",
        type=int,
        default=0,
        help="knowledge distillation: above 0, batches whose samples all carry a 'softlabel' add the task's kd_loss "
        "against those teacher probabilities; 0 ignores soft labels",
    )
    data.add_argument(
        "--do_padding",
        action="store_true",
        help="pad every batch to at least --max_seq_len tokens instead of only to its longest example",
    )
    data.add_argument(
        "--dataloader_num_workers",
        type=int,
        default=2,
        help="worker processes loading training batches (0: the main process); evaluation loads in the main process",
    )
    data.add_argument(
        "--transformer_cache", default=".cache", help="cache folder for the encoder and tokenizer Hugging Face downloads"
    )
    data.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer id/folder (default: --init_checkpoint; required when that is an MT-DNN .pt file)",
    )
    model = p.add_argument_group("model")
    model.add_argument(
        "--update_bert_opt",
        type=int,
        default=0,
        help="above 0, freeze the shared encoder and train only the heads (and a pooler added by this project); "
        "0 trains everything",
    )
    model.add_argument(
        "--multi_gpu_on",
        action="store_true",
        help="one process trains on every visible GPU through nn.DataParallel, as upstream; without several GPUs "
        "(or under torchrun) it has no effect, with a warning. torchrun --nproc_per_node N train.py … is faster",
    )
    model.add_argument(
        "--mem_cum_type",
        default="simple",
        help="SAN heads: how the initial state summarises the hypothesis: 'simple' (linear self-attention) "
        "or 'mlp' (an MLP of --answer_att_hidden_size units first)",
    )
    model.add_argument(
        "--answer_num_turn", type=int, default=5, help="SAN heads: number of reasoning turns (at least 1)"
    )
    model.add_argument(
        "--answer_mem_drop_p",
        type=float,
        default=0.1,
        help="SAN heads: stochastic prediction dropout, the chance of dropping each turn in training "
        "(one turn per example is always kept)",
    )
    model.add_argument(
        "--answer_att_hidden_size",
        type=int,
        default=128,
        help="SAN heads: hidden size of the summary MLP of --mem_cum_type mlp; unused with 'simple'",
    )
    model.add_argument("--answer_att_type", default="bilinear", help=NO_EFFECT + " (SAN attention is always bilinear)")
    model.add_argument("--answer_rnn_type", default="gru", help=NO_EFFECT + " (the SAN state update is always a GRU cell)")
    model.add_argument(
        "--answer_sum_att_type",
        default="bilinear",
        help="SAN heads: premise attention type; only 'bilinear' is implemented, another value fails when a SAN head is built",
    )
    model.add_argument("--answer_merge_opt", type=int, default=1, help=NO_EFFECT)
    model.add_argument(
        "--answer_mem_type",
        type=int,
        default=1,
        help="SAN heads: 1 averages the turns' probabilities, 0 returns the last turn's logits; other values fail",
    )
    model.add_argument(
        "--max_answer_len", type=int, default=10, help="span tasks: longest answer span (tokens) decoding considers"
    )
    model.add_argument("--answer_dropout_p", type=float, default=0.1, help=NO_EFFECT + " (upstream did not use it either)")
    model.add_argument(
        "--answer_weight_norm_on",
        action="store_true",
        help="SAN heads: weight-normalise the classifier, the bilinear attention and the GRU weights",
    )
    model.add_argument("--dump_state_on", action="store_true", help=NO_EFFECT)
    model.add_argument(
        "--answer_opt", type=int, default=1, help=NO_EFFECT + " (enable_san in --task_def picks SAN heads per task)"
    )
    model.add_argument(
        "--pooler_actf",
        default="tanh",
        help="activation (tanh, gelu, relu, linear) of the pooler added to encoders that have none (DeBERTa, ELECTRA, …); "
        "an encoder's own pooler is kept as it is",
    )
    model.add_argument("--mtl_opt", type=int, default=0, help=NO_EFFECT)
    model.add_argument(
        "--ratio",
        type=float,
        default=0.0,
        help="above 0 with two or more training datasets: each epoch uses all batches of the main (first) dataset "
        "plus int(min(ratio × main batches, auxiliary batches)) auxiliary batches drawn afresh; 0 uses every batch",
    )
    model.add_argument(
        "--mix_opt",
        type=int,
        default=0,
        help="above 0, each epoch runs the auxiliary datasets' batches (shuffled) first and the main (first) "
        "dataset's last; 0 shuffles all batches together",
    )
    model.add_argument(
        "--max_seq_len",
        type=int,
        default=512,
        help="longest training example in tokens: longer ones are truncated, not dropped; also the length of --do_padding",
    )
    model.add_argument(
        "--init_ratio", type=float, default=1.0, help="new heads' linear weights ~ N(0, (0.02·r)²), biases zero"
    )
    model.add_argument("--encoder_type", type=int, default=1, help=NO_EFFECT + " (the encoder class comes from its config)")
    model.add_argument(
        "--num_hidden_layers",
        type=int,
        default=-1,
        help="keep only the encoder's first N layers (at most its own number); -1 or 0 keeps them all",
    )
    model.add_argument(
        "--vb_dropout",
        type=str2bool,
        default=True,
        help="true/false: variational dropout (one mask per example shared by all tokens) on token states in "
        "SAN, span and sequence-labeling heads; false uses plain dropout",
    )
    model.add_argument(
        "--sampling",
        choices=("proportional", "temperature"),
        default="proportional",
        help="how tasks take turns: 'proportional' shuffles all batches of the epoch (a task comes up in proportion "
        "to its batches); 'temperature' draws each step's task with probability ∝ batches^(1/T) "
        "(not with --mix_opt or --ratio)",
    )
    model.add_argument(
        "--sampling_temperature", type=float, default=1.0, help="T of --sampling temperature (positive); 1 draws tasks in proportion to their batches"
    )
    model.add_argument(
        "--bin_on",
        action="store_true",
        help="group training examples into length bins of --bin_size tokens; bin k gets batches of "
        "max(1, int(batch_size × bin_grow_ratio^k)), so long examples come in smaller batches",
    )
    model.add_argument("--bin_size", type=int, default=64, help="width in tokens of a --bin_on length bin")
    model.add_argument(
        "--bin_grow_ratio", type=float, default=0.5, help="batch-size factor per --bin_on bin (positive)"
    )
    model.add_argument(
        "--data_sort_on",
        action="store_true",
        help="sort each task's training examples by length before cutting batches (ties in a fresh random order "
        "each epoch), so a batch holds examples of similar length; ignored with --bin_on",
    )
    model.add_argument(
        "--group_by_length",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="cut each task's batches from groups of 50 batches' worth of shuffled examples sorted by length "
        "(regrouped every epoch; task proportions unchanged), so batches carry little padding (default: True; "
        "--no-group_by_length cuts batches in shuffled order; --bin_on and --data_sort_on take precedence)",
    )
    model.add_argument(
        "--max_tokens_per_batch",
        type=int,
        default=0,
        help="token budget: a batch also stops growing before batch size × its longest example exceeds this many "
        "tokens, so with a large --batch_size short examples come in larger batches (0: off; ignored with --bin_on)",
    )
    model.add_argument(
        "--pad_to_multiple_of",
        type=int_or_auto,
        default="auto",
        help="pad each training batch to a multiple of this many tokens (at most --max_seq_len): fewer distinct "
        "batch shapes, whose compiled matrix-product kernels stay cached on a CPU (bf16: ~1.15x faster, "
        "bench/README.md); a different length changes the numbers slightly (other dropout masks). 'auto': 8 for a "
        "bf16/fp16 run on a CPU, 1 (each batch as long as its longest example) otherwise (default: auto)",
    )
    model.add_argument(
        "--attn_implementation",
        choices=("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"),
        default="auto",
        help="the encoder's attention kernel, as transformers names it (default: auto = sdpa, i.e. "
        "torch.nn.functional.scaled_dot_product_attention, on a GPU and eager on a CPU, where it measured ~15%% "
        "faster for BERT-sized batches; flash_attention_2 needs the flash-attn package and a GPU)",
    )
    model.add_argument(
        "--gradient_checkpointing",
        action="store_true",
        help="recompute the encoder's activations in the backward pass: less memory, about a third more time (default: False)",
    )
    model.add_argument("--name", default="farmer", help=NO_EFFECT)
    # Upstream's masked-LM pre-training flags: accepted, MaskLM tasks are rejected by the registry.
    masked_lm = " (masked-LM pre-training; MaskLM tasks are not supported here)"
    model.add_argument("--bert_model_type", default="bert-base-uncased", help=NO_EFFECT + masked_lm)
    model.add_argument("--do_lower_case", action="store_true", help=NO_EFFECT + masked_lm)
    model.add_argument("--masked_lm_prob", type=float, default=0.15, help=NO_EFFECT + masked_lm)
    model.add_argument("--short_seq_prob", type=float, default=0.2, help=NO_EFFECT + masked_lm)
    model.add_argument("--max_predictions_per_seq", type=int, default=128, help=NO_EFFECT + masked_lm)
    train = p.add_argument_group("training")
    train.add_argument(
        "--cuda",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="run on the GPU (on by default when torch sees one); --no-cuda runs on the CPU",
    )
    train.add_argument(
        "--log_per_updates",
        type=int,
        default=500,
        help="log task, update, running loss, learning rate, speed and ETA every N optimizer updates",
    )
    train.add_argument(
        "--log_every_seconds",
        type=float,
        default=30.0,
        help="when stderr is not a terminal (no progress bar): also log that line once N seconds have passed "
        "since the last one, whichever of this and --log_per_updates comes first; 0 turns it off",
    )
    train.add_argument(
        "--save_per_updates",
        type=int,
        default=10000,
        help="with --save_per_updates_on: every N optimizer updates, evaluate --test_datasets and save "
        "<output_dir>/model_<epoch>_<updates>.pt",
    )
    train.add_argument(
        "--save_per_updates_on",
        action="store_true",
        help="also evaluate and checkpoint every --save_per_updates updates, not only at the end of each epoch",
    )
    train.add_argument("--epochs", type=int, default=5, help="number of passes over the training data")
    train.add_argument(
        "--batch_size",
        type=int,
        default=8,
        help="global training batch size: examples per forward/backward step, before gradient accumulation "
        "(an optimizer update sees --batch_size × --grad_accumulation_step examples); --bin_on makes long bins' "
        "batches smaller; under torchrun each process takes its 1/N share of every global batch",
    )
    train.add_argument(
        "--batch_size_eval", type=int, default=8, help="batch size of evaluation and of --encode_mode"
    )
    train.add_argument(
        "--optimizer",
        default="adamax",
        help="adamax (the paper's BERT-style Adamax, no bias correction), adamaxw (bias-corrected, decoupled weight "
        "decay), adam or adamw (both torch AdamW), radam, sgd",
    )
    train.add_argument(
        "--optimizer_kernel",
        choices=OPTIMIZER_KERNELS,
        default="auto",
        help="how adamax and adamaxw run their update: 'eager' as a few multi-tensor passes over the parameters, "
        "'compiled' as one torch.compile-generated loop over each parameter (CPU only; needs a C++ compiler, "
        "compiles once per process in a few seconds, falls back to eager with a warning if it cannot; the numbers "
        "agree to the last bit or two of each element). 'auto': compiled on a CPU for runs of at least "
        f"{COMPILED_KERNEL_MIN_UPDATES} optimizer updates, eager otherwise. Other optimizers use torch's own "
        "kernels (default: auto)",
    )
    train.add_argument(
        "--grad_clipping",
        type=float,
        default=0.0,
        help="clip each parameter's gradient to this norm before the update; 0 turns it off",
    )
    train.add_argument(
        "--global_grad_clipping",
        type=float,
        default=1.0,
        help="clip the gradient norm over all trainable parameters to this value; 0 turns it off",
    )
    train.add_argument(
        "--weight_decay",
        type=float,
        default=0.01,
        help="weight decay of every parameter except biases and LayerNorm parameters",
    )
    train.add_argument(
        "--learning_rate", type=float, default=5e-5, help="peak learning rate (reached at the end of --warmup)"
    )
    train.add_argument("--momentum", type=float, default=0.0, help="momentum of --optimizer sgd; unused by the others")
    train.add_argument(
        "--warmup",
        type=float,
        default=0.1,
        help="fraction of all optimizer updates over which the learning rate rises linearly from 0",
    )
    train.add_argument(
        "--warmup_schedule",
        default="warmup_linear",
        help="upstream's schedule name (warmup_linear, warmup_cosine, warmup_constant, warmup_polynomial), "
        "used when --scheduler_type is 0; a non-zero --scheduler_type wins",
    )
    train.add_argument(
        "--adam_eps",
        type=float,
        default=1e-6,
        help="epsilon of adamax, adamaxw, adam/adamw and radam; unused by sgd",
    )
    train.add_argument(
        "--dropout_p",
        type=float,
        default=0.1,
        help="dropout of the task heads, for tasks whose --task_def entry sets no dropout_p",
    )
    train.add_argument(
        "--dropout_w",
        type=float,
        default=0.0,
        help="word dropout in training: each real, non-special input token becomes the tokenizer's UNK with this "
        "probability; 0 turns it off",
    )
    train.add_argument(
        "--bert_dropout_p",
        type=float,
        default=0.1,
        help="encoder dropout: overrides the config's hidden_dropout_prob and attention_probs_dropout_prob "
        "(where the encoder config has them)",
    )
    train.add_argument(
        "--model_ckpt",
        default=None,
        help="with --resume: the checkpoint to continue from: last.pt of a run (replaced at every save) or a full "
        "checkpoint of an earlier version; model_<epoch>.pt files hold weights only and cannot resume "
        "(default: <output_dir>/last.pt)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue exactly where --model_ckpt (<output_dir>/last.pt unless given) stopped (weights, optimizer, "
        "schedule, data position, RNG); "
        "the sampler refuses other data, --batch_size, --seed or mixing flags than that run's",
    )
    train.add_argument(
        "--scheduler_type",
        type=int,
        default=0,
        help="learning-rate decay after warmup: 0 linear, 1 cosine, 2 constant, 3 polynomial (to 1e-7)",
    )
    train.add_argument(
        "--output_dir",
        default="checkpoint",
        help="folder of checkpoints, score files, config.json and the log (created if missing)",
    )
    train.add_argument(
        "--keep_last",
        type=int,
        default=0,
        help="keep only the newest N model_*.pt weight files in --output_dir, deleting older ones after each save "
        "(last.pt is always kept); 0 keeps all",
    )
    train.add_argument("--seed", type=int, default=2018, help="random seed of python, numpy, torch and the data order")
    train.add_argument(
        "--grad_accumulation_step",
        type=int,
        default=1,
        help="one optimizer update every N batches, each batch's loss divided by N (at least 1)",
    )
    train.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the encoder (dynamic shapes): the first batches of each new shape compile for a while, "
        "the rest run faster where the compiler helps (default: False; see bench/README.md)",
    )
    train.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads of this process's matrix products (torch.set_num_threads); 0 keeps torch's choice, "
        "one per physical core (default: 0)",
    )
    train.add_argument(
        "--cpu_allocator",
        choices=CPU_ALLOCATORS,
        default="keep",
        help="on a CPU run: 'keep' has glibc's malloc keep freed memory for reuse, so each update's large buffers "
        "(the word-embedding gradient) are not mapped and zero-filled anew by the kernel; the numbers are the same. "
        "'system' leaves the C library's defaults (default: keep; no effect on a GPU or without glibc)",
    )
    train.add_argument(
        "--cpu_dropout",
        choices=CPU_DROPOUTS,
        default="fast",
        help="on a CPU run: 'fast' draws each training dropout mask from 32 random bits per element (one serial draw "
        "for two elements, the rest parallel tensor operations), several times faster than torch's per-element "
        "Bernoulli sampler; the same distribution and scaling, another random stream (a seed draws other masks). "
        "'torch' keeps torch's sampler (default: fast; no effect on a GPU)",
    )
    train.add_argument(
        "--cpu_primitive_cache",
        type=int,
        default=DEFAULT_PRIMITIVE_CACHE,
        help="on a CPU run: entries kept in each of oneDNN's and ideep's caches of matrix-product kernels, one "
        "per shape (~0.45 MB each); an update of one batch length needs about 20, so the default holds the kernels "
        "of the 16 lengths --pad_to_multiple_of 8 leaves below 128 tokens; the libraries' 1,024 let them grow by "
        "hundreds of MB where every length comes (at least 1: ideep crashes without a cache). The numbers are the "
        f"same; $ONEDNN_PRIMITIVE_CACHE_CAPACITY and $LRU_CACHE_CAPACITY win when set (default: {DEFAULT_PRIMITIVE_CACHE})",
    )
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic of training and evaluation: 'auto' (default) is bf16 autocast where the hardware runs "
        "bfloat16 natively (CPUs with AVX-512 BF16 or AMX, GPUs of compute capability 8.0 and up) and fp32 "
        "elsewhere; 'fp32', 'bf16' (autocast, no gradient scaler), 'fp16' (autocast with a gradient scaler)",
    )
    train.add_argument(
        "--fp16",
        action="store_true",
        help="same as --precision fp16: float16 autocast with a gradient scaler (not with --bf16)",
    )
    train.add_argument("--fp16_opt_level", default="O1", help=NO_EFFECT + " (apex opt level; --fp16 uses torch.autocast)")
    train.add_argument(
        "--bf16", action="store_true", help="same as --precision bf16: bfloat16 autocast, no gradient scaler (not with --fp16)"
    )
    train.add_argument(
        "--adv_train",
        action="store_true",
        help="SMART adversarial training: add --adv_alpha × the task's adv_loss between clean and perturbed-embedding outputs",
    )
    train.add_argument("--adv_opt", type=int, default=0, help=NO_EFFECT)
    train.add_argument(
        "--adv_norm_level",
        type=int,
        default=0,
        help="SMART: normalise the perturbation per token (0) or per sentence (1)",
    )
    train.add_argument(
        "--adv_p_norm",
        default="inf",
        help="SMART: perturbation norm: inf (divide by max |·|), l2 (divide by the L2 norm) or l1 (take the sign)",
    )
    train.add_argument("--adv_alpha", type=float, default=1.0, help="SMART: weight of the adversarial loss term")
    train.add_argument("--adv_k", type=int, default=1, help="SMART: number of gradient-ascent steps on the perturbation")
    train.add_argument("--adv_step_size", type=float, default=1e-5, help="SMART: step size of each ascent step")
    train.add_argument(
        "--adv_noise_var",
        type=float,
        default=1e-5,
        help="SMART: scale of the initial Gaussian perturbation (a standard deviation, despite the name)",
    )
    train.add_argument(
        "--adv_epsilon", type=float, default=1e-6, help="SMART: ε added to the norm when normalising the perturbation"
    )
    train.add_argument(
        "--encode_mode",
        action="store_true",
        help="do not train: write <output_dir>/<dataset>_encoding.pt (encoder outputs) of each --test_datasets "
        "entry's test split (dev when there is no test file)",
    )
    train.add_argument("--debug", action="store_true", help=NO_EFFECT)
    dist = p.add_argument_group("distributed")
    dist.add_argument(
        "--fsdp",
        action="store_true",
        help="under torchrun, shard the network (FSDP2: each transformer layer, then the rest) instead of copying it "
        "to every process, for encoders that do not fit one GPU; checkpoints stay whole (rank 0)",
    )
    dist.add_argument(
        "--local_rank",
        "--local-rank",
        type=int,
        default=int(os.environ.get("LOCAL_RANK", -1)),
        help="this process's GPU on its node under torchrun, which sets $LOCAL_RANK (read from there); "
        "-1 outside torchrun",
    )
    dist.add_argument(
        "--world_size",
        type=int,
        default=1,
        help="accepted for compatibility with upstream scripts; no effect here: torchrun sets the world size "
        "(torchrun --nproc_per_node N train.py …)",
    )
    dist.add_argument("--master_addr", default="localhost", help=NO_EFFECT)
    dist.add_argument("--master_port", default="6600", help=NO_EFFECT)
    dist.add_argument("--backend", default="nccl", help=NO_EFFECT)
    return p


# Upstream's --warmup_schedule names mapped onto --scheduler_type.
WARMUP_SCHEDULES = {"warmup_linear": 0, "warmup_cosine": 1, "warmup_constant": 2, "warmup_polynomial": 3}


@dataclass(frozen=True)
class RunOptions:
    """Run-level options: where outputs go, what to evaluate, how to resume."""

    output_dir: str
    log_file: str
    cuda: bool
    resume: bool
    model_ckpt: str
    keep_last: int
    log_every_seconds: float
    glue_format_on: bool
    log_per_updates: int
    save_per_updates: int
    save_per_updates_on: bool
    tensorboard: bool
    tensorboard_logdir: str
    tokenizer: str | None
    encode_mode: bool
    local_rank: int
    multi_gpu_on: bool = False
    fsdp: bool = False
    compile: bool = False
    threads: int = 0
    cpu_allocator: str = "keep"
    cpu_primitive_cache: int = DEFAULT_PRIMITIVE_CACHE


def _pick(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)


# Ranges of the numeric flags that shape a run, checked before anything is loaded (flags kept only
# for upstream compatibility are left out: they do nothing).
_AT_LEAST_ONE = (
    "epochs", "batch_size", "batch_size_eval", "log_per_updates", "save_per_updates", "grad_accumulation_step",
    "answer_num_turn", "answer_att_hidden_size", "max_answer_len", "bin_size", "adv_k", "pad_to_multiple_of",
    "cpu_primitive_cache",
)
_NOT_NEGATIVE = (
    "log_every_seconds", "keep_last",
    "mkd_opt", "dataloader_num_workers", "max_tokens_per_batch", "threads", "update_bert_opt", "ratio", "mix_opt", "grad_clipping",
    "global_grad_clipping", "weight_decay", "momentum", "adv_alpha", "adv_step_size", "adv_noise_var", "adv_epsilon",
    "learning_rate",  # 0 is allowed: it evaluates a checkpoint's weights through a full run without changing them
)
_POSITIVE = ("adam_eps", "init_ratio", "bin_grow_ratio", "sampling_temperature")
_PROBABILITY = ("answer_mem_drop_p", "dropout_p", "dropout_w", "bert_dropout_p")  # in [0, 1)


def check_ranges(args: argparse.Namespace) -> None:
    """One-line ``MTDNNInputError`` naming the first numeric flag outside its range (NaN and inf included)."""

    def require(name: str, ok: bool, what: str) -> None:
        value = getattr(args, name)
        if isinstance(value, float) and not math.isfinite(value) or not ok:
            raise MTDNNInputError(f"--{name} must be {what}, got {value}")

    for name in _AT_LEAST_ONE:
        require(name, getattr(args, name) == "auto" or getattr(args, name) >= 1, "at least 1")
    for name in _NOT_NEGATIVE:
        require(name, getattr(args, name) >= 0, "0 or more")
    for name in _POSITIVE:
        require(name, getattr(args, name) > 0, "a positive number")
    for name in _PROBABILITY:
        require(name, 0 <= getattr(args, name) < 1, "in [0, 1)")
    require("warmup", 0 <= args.warmup <= 1, "a fraction of the run in [0, 1]")
    require("max_seq_len", args.max_seq_len >= 2, "at least 2 (room for [CLS] and [SEP])")
    require("num_hidden_layers", args.num_hidden_layers == -1 or args.num_hidden_layers >= 1, "-1 (all) or at least 1")


def check_choices(args: argparse.Namespace) -> None:
    """Names that registries and tables resolve later (optimizer, schedule, SMART norm), checked before any loading."""
    optimizer_factory(args.optimizer)
    check_scheduler_type(args.scheduler_type)
    if args.adv_train:
        check_p_norm(args.adv_p_norm)
    if args.model_ckpt is not None and not args.resume:
        raise MTDNNInputError(
            "--model_ckpt is read only with --resume; to start a new run from a checkpoint's weights, "
            "pass it as --init_checkpoint (with --tokenizer)"
        )


def options_from_args(args: argparse.Namespace) -> tuple[RunOptions, DataOptions, ModelOptions, TrainOptions, AdvOptions]:
    """Split the parsed flags into the typed option objects; bad values and combinations fail here."""
    split = lambda text: tuple(name for name in text.split(",") if name)  # noqa: E731
    check_ranges(args)
    check_choices(args)
    if args.fp16 and args.bf16:
        raise MTDNNInputError("--fp16 and --bf16 are exclusive: pick one")
    chosen = "fp16" if args.fp16 else "bf16" if args.bf16 else None
    if chosen and args.precision not in ("auto", chosen):
        raise MTDNNInputError(f"--{chosen} contradicts --precision {args.precision}: pick one")
    device_type = "cuda" if args.cuda and torch.cuda.is_available() else "cpu"
    args.precision = resolve_precision(chosen or args.precision, device_type)
    args.attn_implementation = resolve_attention(args.attn_implementation, device_type)
    args.pad_to_multiple_of = resolve_pad_to_multiple_of(args.pad_to_multiple_of, device_type, args.precision)
    if args.optimizer_kernel == "compiled" and device_type != "cpu":
        raise MTDNNInputError("--optimizer_kernel compiled runs on a CPU only; on a GPU use auto or eager")
    args.fp16, args.bf16 = args.precision == "fp16", args.precision == "bf16"
    logger.info("precision: %s on %s%s", args.precision, device_type, " (--precision auto)" if not chosen else "")
    if args.grad_accumulation_step < 1:
        raise MTDNNInputError("--grad_accumulation_step must be at least 1")
    if args.fsdp and args.fp16:
        raise MTDNNInputError("--fsdp does not take --fp16 (its loss scaler does not see the shards): use --bf16")
    if args.warmup_schedule not in WARMUP_SCHEDULES:
        raise MTDNNInputError(f"--warmup_schedule must be one of {sorted(WARMUP_SCHEDULES)}")
    if args.fp16_opt_level != "O1":
        logger.info("--fp16_opt_level %s is ignored: --fp16 uses torch.autocast with a GradScaler", args.fp16_opt_level)
    scheduler_type = args.scheduler_type
    if args.scheduler_type == 0 and args.warmup_schedule != "warmup_linear":
        scheduler_type = WARMUP_SCHEDULES[args.warmup_schedule]
    # --model_ckpt defaults to the resumable state of --output_dir.
    run = _pick(RunOptions, args, model_ckpt=args.model_ckpt or os.path.join(args.output_dir, RESUME_FILE))
    data = _pick(
        DataOptions,
        args,
        train_datasets=split(args.train_datasets),
        test_datasets=split(args.test_datasets),
        sampling_temperature=args.sampling_temperature,
    )
    if not data.train_datasets and not args.encode_mode:
        raise MTDNNInputError("--train_datasets is empty")
    san = SANOptions(
        num_turn=args.answer_num_turn,
        mem_type=args.answer_mem_type,
        mem_drop_p=args.answer_mem_drop_p,
        mem_cum_type=args.mem_cum_type,
        weight_norm_on=args.answer_weight_norm_on,
        att_hidden_size=args.answer_att_hidden_size,
        sum_att_type=args.answer_sum_att_type,
        max_answer_len=args.max_answer_len,
    )
    model = _pick(ModelOptions, args, san=san)
    train = _pick(TrainOptions, args, scheduler_type=scheduler_type)
    adv = _pick(AdvOptions, args)
    return run, data, model, train, adv
