"""``predict.py`` on a checkpoint of a 1-epoch tiny ``train.py`` run: the same score files as the
run's own evaluation, head selection by name or id, the YAML and ``--metric`` options, and
one-line errors (SPEC §8)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_utils.errors import MTDNNInputError
from mt_dnn.checkpoint import load_run_checkpoint
from predict import main
from train import main as train_main

REPO = Path(__file__).resolve().parents[1]
GLUE_YAML = REPO / "experiments" / "glue" / "glue_task_def.yml"


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir: Path, features_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of a 1-epoch run on rte + stsb (heads 0 and 1), evaluated on both."""
    out = tmp_path_factory.mktemp("run")
    train_main([
        "--init_checkpoint", str(tiny_model_dir), "--data_dir", str(features_dir), "--task_def", str(GLUE_YAML),
        "--train_datasets", "rte,stsb", "--test_datasets", "rte,stsb", "--epochs", "1", "--batch_size", "4",
        "--batch_size_eval", "8", "--max_seq_len", "64", "--learning_rate", "1e-3", "--dataloader_num_workers", "0",
        "--transformer_cache", str(out / ".cache"), "--output_dir", str(out),
    ])
    return out


def predict_args(run_dir: Path, features_dir: Path, score: Path, task: str = "rte", *extra: str) -> list[str]:
    return [
        "--task", task, "--checkpoint", str(run_dir / "model_0.pt"), "--prep_input", str(features_dir / f"{task}_dev.json"),
        "--score", str(score), "--max_seq_len", "64", "--batch_size_eval", "8", *extra,
    ]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_scores_equal_the_runs_own_evaluation(task, run_dir, features_dir, tmp_path, capsys):
    score = tmp_path / "out.json"
    metrics = main(predict_args(run_dir, features_dir, score, task, "--with_label"))
    expected = read_json(run_dir / f"{task}_dev_scores_epoch_0.json")
    assert read_json(score) == expected  # metrics, predictions, uids and scores, bit for bit
    assert metrics == expected["metrics"]
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{name}: {json.dumps(value)}" for name, value in expected["metrics"].items()]


def test_stsb_is_the_second_head(run_dir, features_dir, tmp_path):
    by_name, by_id = tmp_path / "name.json", tmp_path / "id.json"
    main(predict_args(run_dir, features_dir, by_name, "stsb"))
    main(predict_args(run_dir, features_dir, by_id, "stsb")[2:] + ["--task_id", "1"])  # --task_id alone
    scores = read_json(by_name)["scores"]
    assert read_json(by_id)["scores"] == scores
    assert len(scores) == 6 and all(isinstance(s, float) for s in scores)  # one regression score each
    assert read_json(by_name)["metrics"] == {}  # no --with_label
    # Head 0 (rte) gives two class probabilities per example instead.
    rte_head = tmp_path / "rte_head.json"
    main(predict_args(run_dir, features_dir, rte_head, "rte")[2:] + ["--task_id", "0"])
    assert len(read_json(rte_head)["scores"]) == 24


def test_dataset_names_yaml_and_metric_override(run_dir, features_dir, tmp_path):
    score = tmp_path / "out.json"
    # A dataset name resolves to its task (rte_extra → rte); the YAML agrees with the checkpoint.
    args = predict_args(run_dir, features_dir, score, "rte", "--with_label", "--task_def", str(GLUE_YAML))
    args[1] = "rte_extra"
    metrics = main(args + ["--metric", "acc,F1,MCC"])
    expected = read_json(run_dir / "rte_dev_scores_epoch_0.json")
    assert list(metrics) == ["ACC", "F1", "MCC"] and metrics["ACC"] == expected["metrics"]["ACC"]
    assert read_json(score)["scores"] == expected["scores"]


def test_network_is_rebuilt_exactly(run_dir):
    run = load_run_checkpoint(run_dir / "model_0.pt")
    saved = torch.load(run_dir / "model_0.pt", map_location="cpu", weights_only=True)["state"]
    state = run.network.state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    assert run.task_names == ["rte", "stsb"] and run.pad_token_id == 0 and not run.network.training


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--task", "mrpc"), r"model_0\.pt: task 'mrpc' has no head in this checkpoint \(the checkpoint's tasks: 0=rte, 1=stsb\)"),
        (("--task_id", "2"), r"--task_id 2 is out of range"),
        (("--task", "rte", "--task_id", "1"), r"--task rte is head 0, not --task_id 1"),
        (("--task", "rte", "--metric", "ACC,BLEU"), r"--metric: unknown metric 'BLEU'"),
    ],
)
def test_bad_arguments(extra, message, run_dir, features_dir, tmp_path):
    score = tmp_path / "out.json"
    args = ["--checkpoint", str(run_dir / "model_0.pt"), "--prep_input", str(features_dir / "rte_dev.json"),
            "--score", str(score), *extra]
    with pytest.raises(MTDNNInputError, match=message):
        main(args)
    assert not score.exists()


def test_example_longer_than_the_encoders_positions(run_dir, tmp_path):
    long = tmp_path / "long.json"
    rows = [{"uid": "a", "label": 0, "token_id": [101, 102], "type_id": [0, 0]},
            {"uid": "b", "label": 1, "token_id": [101] * 512 + [102], "type_id": [0] * 513}]
    long.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(MTDNNInputError, match=r"long\.json: uid 'b' has 513 tokens, more than the encoder's 512 positions"):
        main(["--task", "rte", "--checkpoint", str(run_dir / "model_0.pt"), "--prep_input", str(long),
              "--score", str(tmp_path / "out.json")])


def test_yaml_that_disagrees_with_the_head(run_dir, features_dir, tmp_path):
    yaml = tmp_path / "tasks.yml"
    yaml.write_text(
        "rte:\n  data_format: PremiseAndOneHypothesis\n  enable_san: false\n  metric_meta: [ACC]\n"
        "  n_class: 3\n  task_type: Classification\n"
    )
    with pytest.raises(MTDNNInputError, match=r"tasks\.yml: task rte: n_class is 3 here but 2 in the checkpoint's head"):
        main(predict_args(run_dir, features_dir, tmp_path / "out.json", "rte", "--task_def", str(yaml)))


def test_encoder_only_checkpoint_is_refused(tmp_path, run_dir, features_dir):
    saved = torch.load(run_dir / "model_0.pt", map_location="cpu", weights_only=True)
    encoder_only = tmp_path / "encoder.pt"
    torch.save({"state": saved["state"], "config": {"hidden_size": 32}}, encoder_only)
    with pytest.raises(MTDNNInputError, match=r"encoder\.pt: config has no model, train, task_defs, encoder_config"):
        main(["--task", "rte", "--checkpoint", str(encoder_only), "--prep_input", str(features_dir / "rte_dev.json"),
              "--score", str(tmp_path / "out.json")])


def test_cli_error_is_one_line(run_dir, features_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.run(
        [sys.executable, str(REPO / "predict.py"), *predict_args(run_dir, features_dir, tmp_path / "o.json", "rte")[2:],
         "--task", "qnli"],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    assert process.stderr.rstrip().splitlines()[-1].startswith("error: ") and "task 'qnli' has no head" in process.stderr


def test_the_kernel_caches_are_bounded_on_a_cpu(run_dir, features_dir, tmp_path, monkeypatch):
    from test_host_memory import unset_cache_variables

    from mt_dnn.host_memory import PRIMITIVE_CACHE_VARIABLES

    unset_cache_variables(monkeypatch)
    main(predict_args(run_dir, features_dir, tmp_path / "out.json"))
    assert [os.environ[name] for name in PRIMITIVE_CACHE_VARIABLES] == ["512", "512"]
