"""Faults of a training run: each is one line and exit code 2, found before the first update where it
can be, and never costs a saved epoch (the epoch's checkpoint is written before it is evaluated)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_train import (
    GLUE_YAML,
    REPO,
    assert_same_weights,
    keeping_resume_states,
    load_checkpoint,
    resume_state,
    strict_json,
    train_args,
)

import mt_dnn.checkpoint as checkpoint_module
from data_utils.errors import run_cli
from predict import main as predict_main
from train import main


def run_main(argv: list[str], capsys: pytest.CaptureFixture, entry=main) -> tuple[int, str]:
    """Run a CLI entry as its ``__main__`` does; returns (exit code, the stderr lines starting with ``error:``)."""
    capsys.readouterr()
    try:
        run_cli(lambda: entry(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, errors
    return code, errors[0] if errors else ""


def checkpoints(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("model_*.pt"))


@pytest.fixture(scope="module")
def rte_stsb_run(tiny_model_dir, features_dir, tmp_path_factory) -> Path:
    """A finished 2-epoch run on rte and stsb (heads rte, stsb)."""
    out = tmp_path_factory.mktemp("run")
    main(train_args(tiny_model_dir, features_dir, out))
    return out


# ---- flags and paths, before anything is loaded -----------------------------------------------
@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--epochs", "0", "--epochs must be at least 1, got 0"),
        ("--epochs", "-1", "--epochs must be at least 1, got -1"),
        ("--batch_size", "0", "--batch_size must be at least 1"),
        ("--batch_size_eval", "0", "--batch_size_eval must be at least 1"),
        ("--pad_to_multiple_of", "0", "--pad_to_multiple_of must be at least 1, got 0"),
        ("--learning_rate", "-1", "--learning_rate must be 0 or more, got -1.0"),
        ("--learning_rate", "nan", "--learning_rate must be 0 or more, got nan"),
        ("--warmup", "2", "--warmup must be a fraction of the run in [0, 1]"),
        ("--dropout_p", "1.5", "--dropout_p must be in [0, 1)"),
        ("--max_seq_len", "1", "--max_seq_len must be at least 2"),
        ("--adam_eps", "inf", "--adam_eps must be a positive number, got inf"),
    ],
)
def test_numeric_flags_out_of_range(flag, value, message, tiny_model_dir, features_dir, tmp_path, capsys):
    code, error = run_main(train_args(tiny_model_dir, features_dir, tmp_path / "out", flag, value), capsys)
    assert code == 2 and message in error
    assert not (tmp_path / "out").exists()  # nothing created for a run that cannot start


@pytest.mark.parametrize("kind", ["missing", "run_folder", "garbage_pt"])
def test_init_checkpoint_that_is_not_a_model(kind, rte_stsb_run, tiny_model_dir, features_dir, tmp_path, capsys):
    source = {
        "missing": str(tmp_path / "nowhere" / "model"),
        "run_folder": str(rte_stsb_run),
        "garbage_pt": str(tmp_path / "garbage.pt"),
    }[kind]
    (tmp_path / "garbage.pt").write_bytes(os.urandom(1000))
    argv = train_args(Path(source), features_dir, tmp_path / "out", "--tokenizer", str(tiny_model_dir), datasets="rte")
    if kind != "garbage_pt":
        argv = argv[:-2]  # the tokenizer comes from --init_checkpoint
    code, error = run_main(argv, capsys)
    expected = {
        "missing": "no such file or folder (--init_checkpoint)",
        "run_folder": "is a train.py output folder, not a model: pass one of its checkpoints",
        "garbage_pt": "cannot read checkpoint: not a torch.save zip archive",
    }[kind]
    assert code == 2 and expected in error, error
    assert "weights_only" not in error


def test_output_dir_that_cannot_be_created(tiny_model_dir, features_dir, tmp_path, capsys):
    # Tests run as root, which writes into read-only folders; a regular file in the path fails for everyone.
    (tmp_path / "file").write_text("x")
    code, error = run_main(train_args(tiny_model_dir, features_dir, tmp_path / "file" / "out"), capsys)
    assert code == 2 and "--output_dir/--log_file cannot be written" in error


# ---- datasets against the encoder, before the first update --------------------------------
@pytest.fixture(scope="module")
def short_position_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny BERT with only 100 positions (rte's fixture has rows of up to 128 tokens)."""
    from conftest import TINY_BERT
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("short_bert")
    BertModel(BertConfig(**TINY_BERT, max_position_embeddings=100)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def test_dev_row_longer_than_the_encoders_positions_fails_before_training(
    short_position_model, features_dir, tmp_path, capsys
):
    # Training rows are cut to --max_seq_len 64; dev rows are scored whole and line 11 has 128 tokens.
    code, error = run_main(train_args(short_position_model, features_dir, tmp_path, datasets="rte"), capsys)
    assert code == 2
    assert "rte_dev.json:11: an example of 128 tokens, longer than the encoder's 100 positions" in error
    assert checkpoints(tmp_path) == []


def test_max_seq_len_beyond_the_encoders_positions(short_position_model, features_dir, tmp_path, capsys):
    argv = train_args(short_position_model, features_dir, tmp_path, "--max_seq_len", "128", datasets="stsb")
    code, error = run_main(argv, capsys)
    assert code == 2 and "--max_seq_len 128 is more than the encoder's 100 positions" in error


# ---- no trained work lost ---------------------------------------------------------------------
def test_failed_evaluation_keeps_the_epoch_and_the_run_goes_on(tiny_model_dir, features_dir, tmp_path, capsys):
    out = tmp_path / "out"
    # A folder where epoch 0's rte dev score file must go: its write fails (a real OSError).
    (out / "rte_dev_scores_epoch_0.json").mkdir(parents=True)
    with keeping_resume_states():
        code, error = run_main(train_args(tiny_model_dir, features_dir, out), capsys)
    assert code == 2
    assert "training finished, but 1 evaluation(s) failed; first: rte dev (epoch 0, update 5)" in error
    assert checkpoints(out) == ["model_0.pt", "model_1.pt"]
    assert (out / "stsb_dev_scores_epoch_0.json").is_file() and (out / "rte_dev_scores_epoch_1.json").is_file()
    assert error in (out / "mt-dnn-train.log").read_text(encoding="utf-8")
    # The epoch whose evaluation failed resumes to the same end as the run that went on.
    resumed = tmp_path / "resumed"
    epoch_0 = resume_state(out, "model_0.pt")
    main(train_args(tiny_model_dir, features_dir, resumed, "--resume", "--model_ckpt", str(epoch_0)))
    assert_same_weights(out / "model_1.pt", resumed / "model_1.pt")


def test_divergence_stops_with_one_line_in_the_log_and_nan_scores_become_null(
    tiny_model_dir, features_dir, tmp_path, capsys
):
    argv = train_args(
        tiny_model_dir, features_dir, tmp_path, "--learning_rate", "1e38", "--optimizer", "sgd",
        "--global_grad_clipping", "0", "--epochs", "6", datasets="rte",
    )
    code, error = run_main(argv, capsys)
    assert code == 2 and "training stopped: 10 non-finite losses in a row" in error
    assert (tmp_path / "mt-dnn-train.log").read_text(encoding="utf-8").rstrip().endswith(error)
    # The epochs before the stop are saved and their (NaN) scores are valid JSON, with null for NaN.
    assert "model_0.pt" in checkpoints(tmp_path)
    load_checkpoint(tmp_path / "model_0.pt")
    nulls = 0
    for path in tmp_path.glob("rte_dev_scores_epoch_*.json"):
        nulls += strict_json(path)["scores"].count(None)
    assert nulls > 0


@pytest.mark.parametrize(
    "failure, reason",
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device"),
        (RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"), "write failed (disk full?)"),
    ],
)
def test_save_interrupted_midway_keeps_the_earlier_checkpoint(
    failure, reason, tiny_model_dir, features_dir, tmp_path, capsys, monkeypatch
):
    real_save = torch.save
    calls = []

    def save_that_fails_the_third_time(obj, handle):  # model_0.pt, last.pt, then model_1.pt
        calls.append(handle.name)
        if len(calls) == 3:
            handle.write(b"half a checkpoint")
            raise failure
        real_save(obj, handle)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_that_fails_the_third_time)
    code, error = run_main(train_args(tiny_model_dir, features_dir, tmp_path, datasets="rte"), capsys)
    monkeypatch.undo()
    assert code == 2
    assert f"model_1.pt: cannot save checkpoint: {reason}; earlier checkpoints are intact" in error
    assert checkpoints(tmp_path) == ["model_0.pt"]
    load_checkpoint(tmp_path / "model_0.pt")
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0  # the resumable state of epoch 0 is intact
    assert not list(tmp_path.glob(".*.tmp"))  # the half-written temp file is gone


def test_stale_temp_files_of_a_killed_save_are_removed(tiny_model_dir, features_dir, tmp_path):
    stale = tmp_path / ".model_0.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 4096)
    foreign = tmp_path / ".notes.txt.abc.tmp"  # not a file of ours: kept
    foreign.write_text("mine")
    main(train_args(tiny_model_dir, features_dir, tmp_path, "--epochs", "1", datasets="stsb"))
    assert not stale.exists() and foreign.exists()
    log = (tmp_path / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert f"removed {stale}, left by a save that was interrupted" in log


# ---- resume and heads ---------------------------------------------------------------------------
def test_resume_with_another_task_set(rte_stsb_run, tiny_model_dir, features_dir, tmp_path, capsys):
    argv = train_args(tiny_model_dir, features_dir, tmp_path, "--resume", "--model_ckpt", str(rte_stsb_run / "last.pt"), datasets="rte")
    code, error = run_main(argv, capsys)
    assert code == 2
    assert "cannot resume: the checkpoint's tasks are ['rte', 'stsb'], this run's are ['rte']" in error


def test_resume_with_another_head_size(rte_stsb_run, tiny_model_dir, features_dir, tmp_path, capsys):
    tasks = yaml.safe_load(GLUE_YAML.read_text(encoding="utf-8"))
    tasks["rte"].update(n_class=3, labels=["not_entailment", "entailment", "other"])
    three_class = tmp_path / "tasks.yml"
    three_class.write_text(yaml.safe_dump({"rte": tasks["rte"], "stsb": tasks["stsb"]}), encoding="utf-8")
    argv = train_args(tiny_model_dir, features_dir, tmp_path / "out", "--resume", "--model_ckpt", str(rte_stsb_run / "last.pt"))
    argv[argv.index("--task_def") + 1] = str(three_class)
    code, error = run_main(argv, capsys)
    assert code == 2 and "cannot resume: task rte has n_class 2 in the checkpoint but 3 in --task_def" in error


def test_resuming_a_finished_run_says_so(rte_stsb_run, tiny_model_dir, features_dir, tmp_path):
    argv = train_args(tiny_model_dir, features_dir, tmp_path, "--resume", "--model_ckpt", str(rte_stsb_run / "last.pt"))
    main(argv)
    log = (tmp_path / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert "last.pt ends a 2-epoch run: nothing left to train" in log
    assert checkpoints(tmp_path) == [] and not list(tmp_path.glob("*_scores_*"))


def test_predict_refuses_features_of_another_heads_task(rte_stsb_run, features_dir, tmp_path, capsys):
    argv = [
        "--task", "stsb", "--checkpoint", str(rte_stsb_run / "model_1.pt"),
        "--prep_input", str(features_dir / "rte_dev.json"), "--with_label", "--score", str(tmp_path / "s.json"),
    ]
    code, error = run_main(argv, capsys, entry=predict_main)
    assert code == 2
    assert "rte_dev.json: holds dataset 'rte' of task rte, but the head chosen is task stsb's (Regression)" in error
    assert not (tmp_path / "s.json").exists()
    # The same features under a name of no head of the checkpoint are the user's call.
    shutil.copy(features_dir / "rte_dev.json", tmp_path / "pairs.json")
    argv[argv.index("--prep_input") + 1] = str(tmp_path / "pairs.json")
    assert run_main(argv, capsys, entry=predict_main)[0] == 0


# ---- the real CLI -------------------------------------------------------------------------------
def test_cli_faults_are_one_line_exit_2_and_no_traceback(tiny_model_dir, features_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    cases = {
        "argument --epochs: invalid int value: 'x'": ["--epochs", "x"],
        "--learning_rate must be 0 or more, got -1.0": ["--learning_rate", "-1"],
        "no such file or folder (--init_checkpoint)": ["--init_checkpoint", "./no/such/model"],
    }
    processes = {
        expected: subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *train_args(tiny_model_dir, features_dir, tmp_path / str(i)), *flags],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i, (expected, flags) in enumerate(cases.items())
    }
    for expected, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("error: ") and expected in stderr, stderr


def test_soft_label_of_another_class_count_is_named_by_line(task_defs, tmp_path):
    from conftest import FEATURES

    from data_utils.errors import MTDNNInputError
    from mt_dnn.batcher import TaskDataset

    lines = (FEATURES / "rte_train.json").read_text(encoding="utf-8").splitlines()
    rows = [{**json.loads(line), "softlabel": [0.5, 0.5]} for line in lines[:3]]
    rows[2]["softlabel"] = [0.2, 0.3, 0.5]
    path = tmp_path / "rte_train.json"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(MTDNNInputError, match=r"rte_train\.json:3: 'softlabel' has 3 probabilities; task rte has 2 classes"):
        TaskDataset(path, task_defs["rte"], "rte")


# ---- further faults found by trying bad inputs (Step 4 note) -------------------------------------
@pytest.fixture
def config_only_folder(tmp_path) -> Path:
    """A folder with an encoder config but no weights and no vocabulary."""
    folder = tmp_path / "config_only"
    folder.mkdir()
    from conftest import MINILM

    shutil.copy(MINILM / "config.json", folder / "config.json")
    return folder


def test_tokenizer_without_a_vocabulary_is_refused(config_only_folder, tiny_model_dir, features_dir, tmp_path, capsys):
    argv = train_args(tiny_model_dir, features_dir, tmp_path / "out", "--tokenizer", str(config_only_folder), datasets="rte")
    code, error = run_main(argv, capsys)
    assert code == 2 and "the tokenizer has no vocabulary beyond its 5 special tokens" in error


def test_encoder_folder_without_weights(config_only_folder, tiny_model_dir, features_dir, tmp_path, capsys):
    argv = train_args(config_only_folder, features_dir, tmp_path / "out", "--tokenizer", str(tiny_model_dir), datasets="rte")
    code, error = run_main(argv, capsys)
    assert code == 2 and f"cannot load encoder '{config_only_folder}'" in error


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--grad_accumulation_step", "50"], "--grad_accumulation_step 50 is more than the run's 6 batches"),
        (["--model_ckpt", "x/model_0.pt"], "--model_ckpt is read only with --resume"),
        (["--optimizer", "adamm"], "--optimizer 'adamm' is unknown"),
        (["--scheduler_type", "9"], "--scheduler_type 9 is unknown"),
        (["--max_seq_len", "3"], "--max_seq_len 3 leaves no room for text: a pair takes 3 special tokens"),
    ],
)
def test_settings_that_would_train_nothing_or_something_else(flags, message, tiny_model_dir, features_dir, tmp_path, capsys):
    code, error = run_main(train_args(tiny_model_dir, features_dir, tmp_path, *flags, datasets="rte"), capsys)
    assert code == 2 and message in error, error
    assert checkpoints(tmp_path) == []


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("token_id", 50000, "token id 50000 is beyond the encoder's vocabulary of 30522"),
        ("type_id", 2, "type id 2 is beyond the encoder's 2 token types"),
    ],
)
def test_dev_ids_beyond_the_encoder_fail_before_training(field, value, message, tiny_model_dir, features_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(features_dir / "rte_train.json", data / "rte_train.json")
    rows = [json.loads(line) for line in (features_dir / "rte_dev.json").read_text().splitlines()]
    rows[4][field][1] = value
    (data / "rte_dev.json").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    code, error = run_main(train_args(tiny_model_dir, data, tmp_path / "out", datasets="rte"), capsys)
    assert code == 2 and f"rte_dev.json:5: {message}" in error, error
    assert checkpoints(tmp_path / "out") == []


def test_a_loss_that_does_not_fit_the_head_fails_before_training(tiny_model_dir, features_dir, tmp_path, capsys):
    tasks = yaml.safe_load(GLUE_YAML.read_text(encoding="utf-8"))
    tasks["rte"]["loss"] = "MseCriterion"
    path = tmp_path / "tasks.yml"
    path.write_text(yaml.safe_dump({"rte": tasks["rte"]}), encoding="utf-8")
    argv = train_args(tiny_model_dir, features_dir, tmp_path / "out", datasets="rte")
    argv[argv.index("--task_def") + 1] = str(path)
    code, error = run_main(argv, capsys)
    assert code == 2 and "rte_train.json: its first batch fails before training" in error
    assert "check task rte's loss, n_class and data_format in --task_def" in error
    assert checkpoints(tmp_path / "out") == []


def test_a_second_live_run_into_the_same_output_dir_is_refused(tiny_model_dir, features_dir, tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".mt-dnn.lock").write_text(str(sleeper.pid))
        code, error = run_main(train_args(tiny_model_dir, features_dir, tmp_path, datasets="stsb"), capsys)
        assert code == 2 and f"another run (process {sleeper.pid}) is writing into this --output_dir" in error
    finally:
        sleeper.kill()
        sleeper.wait()
    # The owner is gone: its lock is stale and the next run takes it over.
    main(train_args(tiny_model_dir, features_dir, tmp_path, "--epochs", "1", datasets="stsb"))
    assert checkpoints(tmp_path) == ["model_0.pt"]


def test_interrupt_names_the_state_to_resume_and_resume_ends_as_a_straight_run(
    tiny_model_dir, features_dir, tmp_path, monkeypatch, capsys
):
    from mt_dnn.model import MTDNNModel

    real_update, calls = MTDNNModel.update, []

    def update_then_interrupt(self, batch):
        calls.append(1)
        if len(calls) == 5:  # the 2nd batch of epoch 1 (3 batches an epoch)
            raise KeyboardInterrupt
        return real_update(self, batch)

    monkeypatch.setattr(MTDNNModel, "update", update_then_interrupt)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(train_args(tiny_model_dir, features_dir, out, datasets="rte"))
    assert exit_.value.code == 130
    log = (out / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert f"interrupted; to continue from the last save ({out / 'last.pt'}), run the same command with --resume" in log
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    # The same command plus --resume (last.pt of --output_dir) ends where a run never interrupted ends.
    main(train_args(tiny_model_dir, features_dir, out, "--resume", datasets="rte"))
    main(train_args(tiny_model_dir, features_dir, tmp_path / "straight", datasets="rte"))
    assert_same_weights(tmp_path / "straight" / "model_1.pt", out / "model_1.pt")
    assert checkpoints(out) == ["model_0.pt", "model_1.pt"]


def test_predict_with_a_folder_as_checkpoint(tiny_model_dir, features_dir, tmp_path, capsys):
    argv = ["--task", "rte", "--checkpoint", str(tiny_model_dir), "--prep_input", str(features_dir / "rte_dev.json"),
            "--score", str(tmp_path / "s.json")]
    code, error = run_main(argv, capsys, entry=predict_main)
    # predict.py also reads export folders (scripts/export_hf.py): a model folder without its manifest is refused.
    assert code == 2 and "not an MT-DNN export folder (no mtdnn.json" in error and "\n" not in error.strip()
