"""scripts/reproduce_glue.py (plan, selection, skip-when-done, resume) and scripts/report.py (tables from score files)."""
from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
driver = importlib.import_module("reproduce_glue")
report = importlib.import_module("report")

SHARED = REPO.parent / "shared"


def _write(path: Path, rows: int, header: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("head\tx\n" if header else "") + "".join(f"{i}\trow\n" for i in range(rows)), encoding="utf-8")


@pytest.fixture
def fake_glue(tmp_path: Path) -> Path:
    """Raw GLUE folders with only their row counts meaningful: CoLA 12 (no header), RTE 8, MRPC 9, STS-B 11, QNLI dev 7."""
    glue = tmp_path / "glue"
    _write(glue / "CoLA" / "train.tsv", 12, header=False)
    _write(glue / "RTE" / "train.tsv", 8)
    _write(glue / "MRPC" / "train.tsv", 9)
    _write(glue / "STS-B" / "train.tsv", 11)
    _write(glue / "QNLI" / "dev.tsv", 7)
    return glue


def _config(tmp_path: Path, glue: Path, **changes: object) -> Path:
    config = yaml.safe_load(driver.DEFAULT_CONFIG.read_text(encoding="utf-8"))
    config.update(glue_dir=str(glue))
    config["refinement"]["cpu_row_cap"] = 10
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _plan_keys(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line[:3].strip().isdigit()]


def _plan_examples(output: str) -> dict[str, int]:
    return {line.split()[1]: int(line.split()[3]) for line in output.splitlines() if line[:3].strip().isdigit()}


def test_dry_run_lists_the_runs_in_dependency_order(tmp_path, fake_glue, capsys):
    config = _config(tmp_path, fake_glue)
    assert driver.main(["--dry_run", "--config", str(config), "--work_dir", str(tmp_path / "w"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    expected = ["refine/proportional", "refine/temperature"]
    expected += [f"finetune/select/learning_rate_{lr}/{task}/seed2018" for lr in ("3e-05", "5e-05")
                 for task in ("rte", "mrpc")]
    for seed in (2018, 2019, 2020):
        for task in ("rte", "mrpc", "stsb"):
            expected += [f"finetune/{s}/{task}/seed{seed}" for s in ("a", "b", "c", "d") if task != "stsb" or s in "ab"]
    assert _plan_keys(out) == expected
    assert "refinement tasks: cola, mrpc, stsb, rte, qnli" in out  # QNLI trains on its dev set; SST/WNLI absent
    assert "cola 10/12" in out and "stsb 10/11" in out and "rte 8/8" not in out
    # Examples = rows used x epochs: MRPC 9 x 3 epochs; the refinement 10+9+10+8+7 x 2 epochs.
    examples = _plan_examples(out)
    assert examples["finetune/a/mrpc/seed2018"] == 27 and examples["refine/proportional"] == 88
    assert examples["finetune/c/rte/seed2018"] == 24
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


def test_selection_adds_dependencies_and_gpu_plan_has_no_caps(tmp_path, fake_glue, capsys):
    config = _config(tmp_path, fake_glue)
    base = ["--dry_run", "--config", str(config), "--work_dir", str(tmp_path / "w")]
    driver.main(base + ["--device", "cpu", "--only", "d,a", "--tasks", "rte", "--seeds", "2019"])
    assert _plan_keys(capsys.readouterr().out) == ["refine/temperature", "finetune/a/rte/seed2019",
                                                    "finetune/d/rte/seed2019"]
    driver.main(base + ["--device", "cuda", "--only", "c", "--tasks", "stsb", "--seeds", "2020"])
    out = capsys.readouterr().out
    assert _plan_keys(out) == ["refine/proportional", "finetune/c/stsb/seed2020"]
    assert "GPU found" in out and "capped training sets (rows used/available): none" in out
    driver.main(base + ["--device", "cpu", "--only", "select", "--tasks", "mrpc"])
    assert _plan_keys(capsys.readouterr().out) == ["finetune/select/learning_rate_3e-05/mrpc/seed2018",
                                                    "finetune/select/learning_rate_5e-05/mrpc/seed2018"]
    with pytest.raises(driver.MTDNNInputError, match="--only: unknown e"):
        driver.main(base + ["--only", "e"])
    with pytest.raises(driver.MTDNNInputError, match="--seeds: unknown 7"):
        driver.main(base + ["--seeds", "7"])


class FakeTrain:
    """Stands in for subprocess.Popen of train.py (and predict.py): records the command, writes what is asked."""

    calls: list[list[str]] = []

    def __init__(self, command: list[str], scores: bool = True, model: bool = True, **kwargs: object):
        FakeTrain.calls.append(command)
        self.args, self.returncode = command, 0

        def flag(name: str) -> str:
            return command[command.index(name) + 1]

        if command[1].endswith("predict.py"):
            Path(flag("--score")).write_text(json.dumps({"metrics": {"ACC": 40.0}}))
            return
        out, last = Path(flag("--output_dir")), int(flag("--epochs")) - 1
        for dataset in flag("--test_datasets").split(",") if scores else []:
            (out / f"{dataset}_dev_scores_epoch_{last}.json").write_text(json.dumps({"metrics": {"ACC": 50.0}}))
        if model:
            (out / f"model_{last}.pt").write_bytes(b"w")

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def poll(self) -> int:
        return 0

    def communicate(self, *args: object, **kwargs: object) -> tuple[None, None]:
        return None, None

    def __enter__(self) -> FakeTrain:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _setup(tmp_path: Path, config: Path) -> driver.Setup:
    args = driver.build_parser().parse_args(["--config", str(config), "--work_dir", str(tmp_path / "w"), "--device", "cpu"])
    return driver.make_setup(args)


def test_done_marker_only_with_score_files_and_resume_from_last_pt(tmp_path, fake_glue, monkeypatch):
    s = _setup(tmp_path, _config(tmp_path, fake_glue))
    run = next(r for r in driver.build_plan(s, ["rte", "mrpc"]) if r.key == "finetune/a/rte/seed2018")
    rows = {"rte": {"rows": 8, "full": 8}}
    FakeTrain.calls = []
    monkeypatch.setattr(driver.subprocess, "Popen", lambda cmd, **kw: FakeTrain(cmd, scores=False, model=False))
    assert driver.execute(run, s, rows) is False  # exit code 0 but no score file of the last epoch: not done
    assert not (run.output_dir(s) / "DONE").exists() and driver.run_status(run, s) == "todo"

    (run.output_dir(s) / "last.pt").write_bytes(b"state")  # a run stopped midway
    assert driver.run_status(run, s) == "resume"
    monkeypatch.setattr(driver.subprocess, "Popen", lambda cmd, **kw: FakeTrain(cmd))
    assert driver.execute(run, s, rows) is True
    assert FakeTrain.calls[-1][-3:] == ["--resume", "--model_ckpt", str(run.output_dir(s) / "last.pt")]
    assert driver.run_status(run, s) == "done"
    assert json.loads((run.output_dir(s) / "DONE").read_text())["dev_metrics"] == {"rte": {"ACC": 50.0}}
    timing = json.loads((run.output_dir(s) / "timing.json").read_text())
    assert timing["finished"] and [seg["resumed"] for seg in timing["segments"]] == [False, True]
    assert timing["examples"] == 24
    # keep_checkpoints 'last': the resumable state goes once the run is done, the last weights stay.
    assert not (run.output_dir(s) / "last.pt").exists() and (run.output_dir(s) / "model_2.pt").exists()

    # Stopped between the last save and its evaluation: the last epoch's weights are scored with predict.py.
    mrpc = next(r for r in driver.build_plan(s, ["rte", "mrpc"]) if r.key == "finetune/b/mrpc/seed2018")
    (s.work_dir / "runs" / "refine" / "proportional").mkdir(parents=True)
    (s.work_dir / "runs" / "refine" / "proportional" / "DONE").write_text("{}")
    monkeypatch.setattr(driver.subprocess, "Popen", lambda cmd, **kw: FakeTrain(cmd, scores=False))
    assert driver.execute(mrpc, s, {"mrpc": {"rows": 9, "full": 9}}) is True
    train_call, predict_call = FakeTrain.calls[-2:]
    assert train_call[train_call.index("--init_checkpoint") + 1].endswith("runs/refine/proportional/model_1.pt")
    assert predict_call[1].endswith("predict.py") and predict_call[predict_call.index("--score") + 1] == str(
        mrpc.output_dir(s) / "mrpc_dev_scores_epoch_2.json")
    assert json.loads((mrpc.output_dir(s) / "DONE").read_text())["dev_metrics"] == {"mrpc": {"ACC": 40.0}}

    # The same run under other hyper-parameters is refused, not silently reused.
    other = _setup(tmp_path, _config(tmp_path, fake_glue, finetune__learning_rate=5e-5))
    with pytest.raises(driver.MTDNNInputError, match="was done with other settings"):
        driver.run_status(run, other)


def test_selection_runs_are_a_with_one_value_changed(tmp_path, fake_glue):
    s = _setup(tmp_path, _config(tmp_path, fake_glue, selection__alternatives={"learning_rate": [2e-4],
                                                                               "optimizer": ["adamw"]}))
    plan = {r.key: r for r in driver.build_plan(s, ["rte", "mrpc"])}
    base = driver.train_args(plan["finetune/a/rte/seed2018"], s)
    for key, flag, value in (("learning_rate_0.0002", "--learning_rate", "0.0002"), ("optimizer_adamw", "--optimizer",
                                                                                     "adamw")):
        run = plan[f"finetune/select/{key}/rte/seed2018"]
        args = driver.train_args(run, s)
        assert run.depends_on is None and args[args.index(flag) + 1] == value
        changed = [i for i, (x, y) in enumerate(zip(base, args)) if x != y]
        assert [args[i - 1] for i in changed] == [flag, "--output_dir"]  # nothing else differs from (a)
    with pytest.raises(driver.MTDNNInputError, match="selection.alternatives must map fine-tuning keys"):
        driver.load_config(_config(tmp_path, fake_glue, selection__alternatives={"seeds": [1]}))


# ----------------------------------------------------------------------------- report on fabricated runs
def _fabricate(work: Path, key: str, dataset: str, per_epoch: list[dict[str, float]], done: bool = True,
               wall_s: float | None = None) -> None:
    folder = work / "runs" / key
    folder.mkdir(parents=True, exist_ok=True)
    for epoch, metrics in enumerate(per_epoch):
        (folder / f"{dataset}_dev_scores_epoch_{epoch}.json").write_text(json.dumps({"metrics": metrics}))
    if done:
        (folder / "DONE").write_text("{}")
    if wall_s is not None:
        (folder / "timing.json").write_text(json.dumps({"examples": 300, "wall_s": wall_s}))


def _fabricated_work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    runs = [{"key": f"refine/{s}", "stage": "refine", "setting": s, "task": "all", "seed": 2018, "epochs": 2,
             "test_datasets": ["rte", "mrpc"], "depends_on": None} for s in ("proportional", "temperature")]
    runs += [{"key": f"finetune/{s}/{t}/seed{seed}", "stage": "finetune", "setting": s, "task": t, "seed": seed,
              "epochs": 2, "test_datasets": [t], "depends_on": None, "override": None}
             for seed in (2018, 2019, 2020) for t in ("rte", "mrpc") for s in ("a", "b", "c", "d")]
    runs += [{"key": f"finetune/select/learning_rate_0.0001/{t}/seed2018", "stage": "finetune", "setting": "select",
              "task": t, "seed": 2018, "epochs": 2, "test_datasets": [t], "depends_on": None,
              "override": ["learning_rate", 1e-4]} for t in ("rte", "mrpc")]
    stage = {"task_def": "experiments/glue/glue_san_task_def.yml", "epochs": 2, "batch_size": 16, "learning_rate": 3e-5,
             "optimizer": "adamax", "seed": 2018, "sampling_temperature": 2.0, "dev_as_train": ["qnli"], "adv_args": {}}
    plan = {"device": "cpu", "variant": "cap5000", "smoke": False, "threads": 2, "model": "m", "max_seq_len": 128,
            "row_cap": 5000, "dev_cap": None, "refine_tasks": ["rte", "mrpc", "stsb"], "data_dir": "data/cap5000",
            "rows": {"rte": {"rows": 2490, "full": 2490}, "mrpc": {"rows": 3668, "full": 3668},
                     "stsb": {"rows": 5000, "full": 5749}},
            "selection": {"alternatives": {"learning_rate": [1e-4]}, "tasks": ["rte", "mrpc"], "seeds": [2018],
                          "outcome": "kept 3e-05"}, "finetune_task_def": "experiments/glue/glue_san_task_def.yml",
            "stages": {"refinement": stage, "finetune": stage}, "runs": runs}
    work.mkdir()
    (work / "plan.json").write_text(json.dumps(plan))
    data = work / "data" / "cap5000"
    data.mkdir(parents=True)
    # Dev labels: RTE 7 of 10 entailment (floor 70.0); MRPC 6 of 10 positive (acc 60.0, F1 2*0.6/1.6 = 75.0).
    (data / "rte_dev.tsv").write_text("".join(f"{i}\t{'entailment' if i < 7 else 'not_entailment'}\tp\th\n"
                                              for i in range(10)))
    (data / "mrpc_dev.tsv").write_text("".join(f"{i}\t{1 if i < 6 else 0}\tp\th\n" for i in range(10)))
    # RTE (a): three seeds 60, 62, 64 (mean 62, sample std 2); (b): two of three, 70 and 71 (std 0.7071).
    for seed, value in zip((2018, 2019, 2020), (60.0, 62.0, 64.0)):
        _fabricate(work, f"finetune/a/rte/seed{seed}", "rte", [{"ACC": value - 10}, {"ACC": value}], wall_s=100.0 * seed / 2018)
    _fabricate(work, "finetune/b/rte/seed2018", "rte", [{"ACC": 65.0}, {"ACC": 70.0}])
    _fabricate(work, "finetune/b/rte/seed2019", "rte", [{"ACC": 66.0}, {"ACC": 71.0}])
    _fabricate(work, "finetune/b/rte/seed2020", "rte", [{"ACC": 99.0}, {"ACC": 99.0}], done=False)  # not finished
    _fabricate(work, "finetune/a/mrpc/seed2019", "mrpc", [{"ACC": 79.0, "F1": 84.0}, {"ACC": 80.0, "F1": 85.0}])
    _fabricate(work, "refine/proportional", "rte", [{"ACC": 55.0}, {"ACC": 58.5}])
    _fabricate(work, "finetune/select/learning_rate_0.0001/rte/seed2018", "rte", [{"ACC": 50.0}, {"ACC": 57.0}])
    return work


def test_report_renders_partial_results(tmp_path):
    work = _fabricated_work(tmp_path)
    out = tmp_path / "docs" / "results.md"
    page = report.main(["--work_dir", str(work), "--out", str(out)])
    assert out.read_text() == page
    finetune_part = page.split("## Fine-tuning")[1].split("## Refinement")[0]
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line for line in finetune_part.splitlines()
            if line.startswith("| ")}
    rte = [cell.strip() for cell in rows[("RTE", "acc")].strip("|").split("|")]
    assert rte[2:] == ["70.0", "62.00 ± 2.00 (n=3)", "70.50 ± 0.71 (n=2 of 3)", "— (0 of 3)", "— (0 of 3)"]
    mrpc_acc = [cell.strip() for cell in rows[("MRPC", "acc")].strip("|").split("|")]
    mrpc_f1 = [cell.strip() for cell in rows[("MRPC", "F1")].strip("|").split("|")]
    assert mrpc_acc[2:4] == ["60.0", "80.00 (n=1 of 3)"] and mrpc_f1[2:4] == ["75.0", "85.00 (n=1 of 3)"]
    assert mrpc_acc[4] == "— (0 of 3)"
    assert "`finetune/b/rte/seed2020` — not run" in page and "`finetune/a/rte/seed2018`" not in page.split("## Missing")[1]
    assert "STS-B (capped) | 5,000 | 5,749" in page
    # Refinement table: proportional finished (58.50 at the last epoch), temperature missing.
    assert "| RTE | acc | 58.50 | — |" in page
    # Selection on seed 2018: (a) RTE 60 against lr 1e-4's 57; MRPC seed 2018 has finished for neither.
    assert "| learning_rate 3e-05 (finetune's values: the (a) runs) | 60.00 (n=1) | — (0 of 1) | — (0 of 1) |" in page
    assert "| learning_rate 0.0001 | 57.00 (n=1) | — (0 of 1) | — (0 of 1) |" in page
    assert "Hyper-parameter selection (below): kept 3e-05" in page
    # Wall-clock of (a): 4 of 6 runs done, 3 timed: 100 + 100*2019/2018 + 100*2020/2018 s = 300.15 s = 5m00s,
    # 1m40s per timed run; examples/s 300/100, 300/100.05, 300/100.10: median 2.997.
    assert "| fine-tuning (a) encoder → fine-tune | 4 of 6 | 5m00s | 1m40s | 3.0 |" in page
    pytest.importorskip("matplotlib")
    for name in ("finetune_rte", "dev_per_epoch_rte", "finetune_mrpc", "dev_per_epoch_mrpc"):
        assert (tmp_path / "docs" / "img" / f"{name}.png").stat().st_size > 1000
        assert f"](img/{name}.png)" in page


def test_report_embeds_the_table_between_the_readme_markers(tmp_path):
    work = _fabricated_work(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{report.README_START}\nold table\n{report.README_END}\nafter\n")
    report.main(["--work_dir", str(work), "--out", str(tmp_path / "docs" / "results.md"), "--readme", str(readme)])
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Title\n\nbefore\n") and text.endswith("after\n")
    block = text.split(report.README_START)[1].split(report.README_END)[0]
    assert "| RTE | acc | 70.0 | 62.00 ± 2.00 (n=3) | 70.50 ± 0.71 (n=2 of 3) |" in block
    assert "[docs/results.md](docs/results.md)" in block
    if importlib.util.find_spec("matplotlib"):
        assert "![finetune_rte](docs/img/finetune_rte.png)" in block
    readme.write_text("no markers\n")
    with pytest.raises(report.MTDNNInputError, match="expected one"):
        report.main(["--work_dir", str(work), "--out", str(tmp_path / "docs" / "results.md"), "--readme", str(readme)])


def test_report_without_plan_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "report.py"), "--work_dir", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'plan.json'}: no plan.json: run scripts/reproduce_glue.py " \
                                    "(without --dry_run) first"


# ----------------------------------------------------------------------------- smoke, end to end
@pytest.mark.skipif(not (SHARED / "models" / "all-MiniLM-L6-v2").is_dir() or not (SHARED / "data" / "glue").is_dir(),
                    reason="the shared MiniLM and GLUE copies are not beside the checkout")
def test_smoke_end_to_end_then_nothing_left_to_run(tmp_path, monkeypatch, capsys):
    work = tmp_path / "smoke"
    argv = ["--smoke", "--only", "b", "--tasks", "rte", "--work_dir", str(work), "--device", "cpu", "--threads", "1"]
    assert driver.main(argv) == 0
    for key in ("refine/proportional", "finetune/b/rte/seed2018"):
        assert (work / "runs" / key / "DONE").is_file()
    page = (work / "results.md").read_text()
    assert "| RTE | acc |" in page and "(n=1)" in page and "Smoke run: 24 training and 24 dev rows" in page
    assert (work / "data" / "smoke24" / "rte_train.tsv").read_text().count("\n") == 24

    # A second invocation trains nothing and prepares nothing: only the report is written again.
    capsys.readouterr()
    real_popen = subprocess.Popen

    def popen(command: list[str], **kwargs: object) -> subprocess.Popen:
        assert not command[1].endswith(("train.py", "predict.py")), "a finished run was started again"
        return real_popen(command, **kwargs)

    monkeypatch.setattr(driver.subprocess, "Popen", popen)
    tools = []
    real_tool = driver._run_tool
    monkeypatch.setattr(driver, "_run_tool", lambda cmd, s, what: (tools.append(what), real_tool(cmd, s, what)))
    assert driver.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("done already, skipped") == 2 and all(what.startswith("report") for what in tools)
