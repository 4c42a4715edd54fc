"""Every ``train.py`` flag has a help line that states its default: ``--help`` is how users learn the tool."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mt_dnn.train_args import build_parser

REPO = Path(__file__).resolve().parents[1]
DESCRIPTION = "One line of description.\n\n    python train.py --an example --kept as written"
PARSER = build_parser(DESCRIPTION)
FLAGS = [action for action in PARSER._actions if not isinstance(action, argparse._HelpAction)]
# Kept only so that upstream's scripts still parse; their help must say that they do nothing.
COMPAT_ONLY = (
    "--answer_att_type", "--answer_rnn_type", "--answer_merge_opt", "--answer_dropout_p", "--dump_state_on",
    "--answer_opt", "--mtl_opt", "--encoder_type", "--name", "--bert_model_type", "--do_lower_case",
    "--masked_lm_prob", "--short_seq_prob", "--max_predictions_per_seq", "--fp16_opt_level", "--adv_opt",
    "--debug", "--world_size", "--master_addr", "--master_port", "--backend",
)


def rendered_help(action: argparse.Action) -> str:
    """The help text of one flag as ``--help`` prints it (``%(default)s`` expanded, defaults appended)."""
    return PARSER._get_formatter()._expand_help(action)


def flag_id(action: argparse.Action) -> str:
    return action.option_strings[0]


def test_the_parser_has_all_its_flags():
    # Guards the per-flag checks below against passing over an empty or truncated list.
    assert len(FLAGS) >= 90
    assert all(action.option_strings for action in FLAGS)


@pytest.mark.parametrize("action", FLAGS, ids=flag_id)
def test_every_flag_has_a_help_line(action):
    assert isinstance(action.help, str) and action.help is not argparse.SUPPRESS
    assert action.help.strip(), f"{flag_id(action)} has an empty help line"


@pytest.mark.parametrize("action", FLAGS, ids=flag_id)
def test_every_help_line_states_the_default(action):
    text = rendered_help(action)
    assert "default" in text, f"{flag_id(action)}: help does not state its default: {text!r}"
    if action.default is not None and action.default is not argparse.SUPPRESS:
        assert str(action.default) in text, f"{flag_id(action)}: default {action.default!r} missing from {text!r}"
    assert "(default: None)" not in text


@pytest.mark.parametrize("flag", COMPAT_ONLY)
def test_compatibility_only_flags_say_they_have_no_effect(flag):
    action = PARSER._option_string_actions[flag]
    assert "no effect" in action.help, f"{flag} is accepted for compatibility only; its help must say so"


def test_batch_size_help_says_it_is_the_global_batch_before_accumulation():
    text = rendered_help(PARSER._option_string_actions["--batch_size"])
    assert "global" in text and "accumulation" in text


def test_help_keeps_the_description_as_written_and_lists_every_flag():
    text = PARSER.format_help()
    assert DESCRIPTION in text
    for action in FLAGS:
        for option in action.option_strings:
            assert option in text
    assert "(default: None)" not in text


def test_train_py_help_renders():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: train.py")
    assert "Multi-task training of MT-DNN" in result.stdout
    assert "--batch_size BATCH_SIZE" in result.stdout and "(default: 8)" in result.stdout
