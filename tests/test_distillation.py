"""``prepare_distillation_data.py`` and the distillation chain (SPEC §6, §8): the teachers'
probabilities averaged per uid into ``softlabel``, one-line errors that leave the output as it was,
upstream's canonical-TSV form, and teacher → ``predict.py`` → soft labels → a student trained with
``--mkd_opt 1`` whose loss is the task loss plus the KD term."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_utils.canonical import read_canonical
from data_utils.errors import MTDNNInputError
from data_utils.task_def import LossCriterion, load_task_defs
from mt_dnn.batcher import Collater, TaskDataset
from mt_dnn.checkpoint import load_run_checkpoint
from mt_dnn.model import MTDNNModel
from mt_dnn.options import AdvOptions
from predict import main as predict_main
from prepare_distillation_data import main
from train import main as train_main

REPO = Path(__file__).resolve().parents[1]
GLUE_YAML = REPO / "experiments" / "glue" / "glue_task_def.yml"
FEATURES = REPO / "tests" / "data" / "features"
CPU = torch.device("cpu")

# Two teachers' probabilities for rte uids 0-2 and their means, worked out by hand.
TEACHER_1 = {"0": [0.9, 0.1], "1": [0.2, 0.8], "2": [0.6, 0.4]}
TEACHER_2 = {"2": [0.5, 0.5], "1": [0.4, 0.6], "0": [0.7, 0.3]}  # another uid order: matched by uid
AVERAGED = {"0": [0.8, 0.2], "1": [0.3, 0.7], "2": [0.55, 0.45]}


def write_scores(path: Path, per_uid: dict[str, list]) -> Path:
    """A score file as predict.py writes it: uids as strings, the n_class scores of each uid in one flat list."""
    payload = {
        "metrics": {},
        "predictions": [0] * len(per_uid),
        "uids": list(per_uid),
        "scores": [value for row in per_uid.values() for value in row],
    }
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def rte_rows(n: int = 3) -> list[dict]:
    return [json.loads(line) for line in (FEATURES / "rte_train.json").read_text().splitlines()[:n]]


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def kd_args(inp: Path, teachers: list[Path], out: Path, task: str = "rte", *extra: str) -> list[str]:
    return ["--task_def", str(GLUE_YAML), "--task", task, "--input", str(inp),
            "--teacher_scores", ",".join(map(str, teachers)), "--output", str(out), *extra]


def test_soft_labels_are_the_mean_of_the_teachers(tmp_path):
    rows = rte_rows()
    inp = write_lines(tmp_path / "rte_train.json", rows)
    teachers = [write_scores(tmp_path / "t1.json", TEACHER_1), write_scores(tmp_path / "t2.json", TEACHER_2)]
    out = tmp_path / "rte_kd_train.json"
    assert main(kd_args(inp, teachers, out)) == 3

    written = [json.loads(line) for line in out.read_text().splitlines()]
    for row, line in zip(rows, written):
        assert list(line) == [*row, "softlabel"]  # every key kept, in order; softlabel last
        assert {k: v for k, v in line.items() if k != "softlabel"} == row
        assert line["softlabel"] == pytest.approx(AVERAGED[row["uid"]], abs=1e-12)


BAD_TEACHERS = {
    "missing uid": (
        {"0": [0.9, 0.1], "2": [0.6, 0.4]}, r"1 uid\(s\) of .*rte_train.json have no scores here, first '1' \(line 2\)"
    ),
    "extra uid": ({**TEACHER_1, "7": [0.5, 0.5]}, r"1 scored uid\(s\) are not in .*rte_train.json, first '7'"),
    "three classes": ({uid: [0.2, 0.3, 0.5] for uid in TEACHER_1}, r"9 scores for 3 uids: expected exactly n_class=2"),
    "not summing to 1": ({**TEACHER_1, "1": [0.7, 0.7]}, r"uid '1': .*sum 1.4.* not probabilities; .*softmax"),
    "negative": ({**TEACHER_1, "2": [1.5, -0.5]}, r"uid '2': .* not probabilities"),
    "null (a diverged teacher)": ({**TEACHER_1, "0": [None, 0.1]}, r"scores\[0\] is not a finite number"),
}


@pytest.mark.parametrize("teacher, message", BAD_TEACHERS.values(), ids=BAD_TEACHERS)
def test_a_bad_teacher_is_one_line_naming_it_and_the_output_stays(tmp_path, teacher, message):
    inp = write_lines(tmp_path / "rte_train.json", rte_rows())
    good, bad = write_scores(tmp_path / "good.json", TEACHER_1), write_scores(tmp_path / "bad.json", teacher)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "rte_kd_train.json"
    out.write_text("an earlier output\n")
    with pytest.raises(MTDNNInputError, match=f"^{re.escape(str(tmp_path / 'bad.json'))}: {message}") as err:
        main(kd_args(inp, [good, bad], out))
    assert "\n" not in str(err.value)
    assert out.read_text() == "an earlier output\n"
    assert [p.name for p in out_dir.iterdir()] == [out.name]  # no temp file left


def test_bad_input_is_rejected_and_nothing_is_written(tmp_path):
    rows = rte_rows()
    teacher = write_scores(tmp_path / "t1.json", TEACHER_1)
    out = tmp_path / "rte_kd_train.json"
    twice = write_lines(tmp_path / "rte_train.json", [rows[0], rows[1], rows[1]])
    with pytest.raises(MTDNNInputError, match=f"^{re.escape(str(twice))}:3: uid '1' appears again \\(first on line 2"):
        main(kd_args(twice, [teacher], out))
    with pytest.raises(MTDNNInputError, match="task stsb: soft labels of Regression tasks are not one probability per"):
        main(kd_args(twice, [teacher], out, "stsb"))
    with pytest.raises(MTDNNInputError, match="the output keeps the input's format"):
        main(kd_args(twice, [teacher], tmp_path / "rte_kd_train.tsv"))
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_exit_code_2_and_one_stderr_line(tmp_path):
    inp = write_lines(tmp_path / "rte_train.json", rte_rows())
    teacher = write_scores(tmp_path / "t.json", {"0": [0.9, 0.1]})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = str(REPO / "prepare_distillation_data.py")
    command = [sys.executable, cli, *kd_args(inp, [teacher], tmp_path / "o.json")]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: {teacher}: 2 uid(s) of {inp} have no scores here, first '1' (line 2); "
        "score the file the soft labels are for"
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "o.json").exists()


# ---- upstream's canonical TSV form ---------------------------------------------------------------
def test_canonical_tsv_gets_a_soft_label_column_or_a_class_1_probability(tmp_path):
    rte = load_task_defs(GLUE_YAML)["rte"]
    tsv = tmp_path / "rte_train.tsv"
    tsv.write_text("".join(f"{uid}\tentailment\tpremise {uid}\thypothesis {uid}\n" for uid in AVERAGED))
    teachers = ",".join(str(write_scores(tmp_path / f"t{i}.json", t)) for i, t in enumerate((TEACHER_1, TEACHER_2)))

    def upstream(std_input: Path, std_output: Path, *extra: str, task: str = "rte") -> None:
        main(["--task_def", str(GLUE_YAML), "--task", task, "--std_input", str(std_input), "--score", teachers,
              "--std_output", str(std_output), *extra])

    with_column = tmp_path / "rte_kd_train.tsv"
    upstream(tsv, with_column, "--add_soft_label")
    rows = read_canonical(with_column, rte)  # what prepro_std.py turns into 'softlabel'
    texts = {uid: [f"premise {uid}", f"hypothesis {uid}"] for uid in AVERAGED}
    assert [(r.uid, r.label, r.texts) for r in rows] == [(uid, "entailment", texts[uid]) for uid in AVERAGED]
    assert [r.softlabel for r in rows] == [pytest.approx(AVERAGED[r.uid], abs=1e-12) for r in rows]

    replaced = tmp_path / "rte_prob_train.tsv"
    upstream(tsv, replaced)
    cells = [line.split("\t") for line in replaced.read_text().splitlines()]
    assert [float(c[1]) for c in cells] == pytest.approx([AVERAGED[c[0]][1] for c in cells], abs=1e-12)
    assert [c[2:] for c in cells] == list(texts.values())

    with pytest.raises(MTDNNInputError, match=f"^{re.escape(str(with_column))}:1: the row already has a soft-label"):
        upstream(with_column, tmp_path / "again.tsv", "--add_soft_label")
    with pytest.raises(MTDNNInputError, match=r"task mnli has 3 classes: .* binary task; pass --add_soft_label"):
        upstream(tsv, tmp_path / "mnli.tsv", task="mnli")


# ---- the chain: teachers → predict.py → soft labels → student ----------------------------------
def run_args(model_dir: Path, data_dir: Path, out: Path, train: str, epochs: int, lr: str, *extra: str) -> list[str]:
    return [
        "--init_checkpoint", str(model_dir), "--data_dir", str(data_dir), "--task_def", str(GLUE_YAML),
        "--train_datasets", train, "--test_datasets", "rte", "--epochs", str(epochs), "--batch_size", "4",
        "--batch_size_eval", "8", "--max_seq_len", "64", "--learning_rate", lr,
        "--dataloader_num_workers", "0", "--transformer_cache", str(out / ".cache"), "--output_dir", str(out), *extra,
    ]


def test_teachers_predict_distill_and_a_student_learns_from_them(tiny_model_dir, features_dir, tmp_path):
    # Two teachers: the checkpoints of epochs 0 and 1 of one run, each scoring the training file. Their
    # high learning rate moves them off the tiny model's near-uniform start, so the KD term below is large.
    teacher_run = tmp_path / "teacher"
    train_main(run_args(tiny_model_dir, features_dir, teacher_run, "rte", 2, "5e-2"))
    scores = []
    for epoch in (0, 1):
        scores.append(tmp_path / f"rte_train_teacher{epoch}.json")
        predict_main(["--task", "rte", "--checkpoint", str(teacher_run / f"model_{epoch}.pt"), "--prep_input",
                      str(features_dir / "rte_train.json"), "--score", str(scores[-1]), "--max_seq_len", "64"])

    # The kd file is dataset rte_kd (task rte) in a data folder that also holds rte's dev file.
    kd_dir = tmp_path / "kd_data"
    kd_dir.mkdir()
    shutil.copy(features_dir / "rte_dev.json", kd_dir / "rte_dev.json")
    kd_file = kd_dir / "rte_kd_train.json"
    main(kd_args(features_dir / "rte_train.json", scores, kd_file))
    teacher_probs = [torch.tensor(json.loads(path.read_text())["scores"]).reshape(-1, 2) for path in scores]
    expected = (teacher_probs[0] + teacher_probs[1]) / 2
    soft = torch.tensor([json.loads(line)["softlabel"] for line in kd_file.read_text().splitlines()])
    torch.testing.assert_close(soft, expected)
    assert not torch.allclose(teacher_probs[0], teacher_probs[1])  # two different teachers

    # The same student run with and without --mkd_opt: only the KD term differs, so the weights do.
    students = {mkd: tmp_path / f"student_mkd{mkd}" for mkd in (0, 1)}
    for mkd, out in students.items():
        train_main(run_args(tiny_model_dir, kd_dir, out, "rte_kd", 1, "1e-3", "--mkd_opt", str(mkd)))
    assert (students[1] / "model_0.pt").is_file() and (students[1] / "rte_dev_scores_epoch_0.json").is_file()
    run = load_run_checkpoint(students[1] / "model_0.pt")
    assert run.train_opts.mkd_opt == 1 and run.task_names == ["rte"]
    weights = {mkd: torch.load(out / "model_0.pt", weights_only=True)["state"] for mkd, out in students.items()}
    assert any(not torch.equal(weights[0][key], weights[1][key]) for key in weights[1])

    # One batch of the kd file through the student's update step: loss = CE(logits, gold) + MSE(softmax(logits), soft).
    task_def = run.task_defs[0]
    assert task_def.kd_loss is LossCriterion.MseCriterion
    dataset = TaskDataset(kd_file, task_def, "rte_kd", 64, is_train=True)
    batch = Collater(run.pad_token_id, 64)([dataset[i] for i in range(4)])
    torch.testing.assert_close(batch.soft_labels, expected[:4])
    options = dataclasses.replace(run.train_opts, mkd_opt=1)
    model = MTDNNModel(run.network, run.task_defs, options, AdvOptions(), 10, CPU)
    seen: dict[str, torch.Tensor] = {}
    head = run.network.scoring_list[0].proj  # rte's linear head: its output is the logits
    head.register_forward_hook(lambda module, args, output: seen.update(logits=output.detach()))
    loss = model.update(batch)
    log_probs = torch.log_softmax(seen["logits"].double(), dim=-1)
    task_loss = -log_probs[torch.arange(4), batch.labels].mean()
    kd_term = ((log_probs.exp() - batch.soft_labels.double()) ** 2).mean()
    assert loss == pytest.approx(float(task_loss + kd_term), rel=1e-5)
    assert float(kd_term) > 1e-3  # well above the float32 rounding of the loss
