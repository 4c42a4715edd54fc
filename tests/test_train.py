"""``train.py`` end to end on the tiny model: score files, GLUE TSVs, config and checkpoints
(weights-only ``model_*.pt``, the resumable ``last.pt``), bit-exact resume (end of epoch and
mid-epoch), ``--init_checkpoint`` from a saved run, and one-line errors for bad input (SPEC §6, §7, §9)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from data_utils.errors import MTDNNInputError
from data_utils.task_def import load_task_defs
from mt_dnn.batcher import Collater, TaskDataset
from mt_dnn.encoder import load_encoder
from mt_dnn.matcher import BERT_CONFIG_KEYS, SANBertNetwork
from mt_dnn.options import ModelOptions
from train import build_parser, main, options_from_args

REPO = Path(__file__).resolve().parents[1]
GLUE_YAML = REPO / "experiments" / "glue" / "glue_task_def.yml"
WEIGHTS_KEYS = {"state", "config", "epoch", "updates"}
RESUME_KEYS = {"state", "optimizer", "config", "scheduler", "scaler", "updates", "epoch", "sampler", "rng", "history"}
SCORE_KEYS = ["metrics", "predictions", "uids", "scores"]
# rte: 12 examples → 3 batches of 4; stsb: 6 → 2 batches: 5 updates per epoch.
UPDATES_PER_EPOCH = 5


def train_args(model_dir: Path, data_dir: Path, output_dir: Path, *extra: str, datasets: str = "rte,stsb") -> list[str]:
    return [
        "--init_checkpoint", str(model_dir),
        "--data_dir", str(data_dir),
        "--task_def", str(GLUE_YAML),
        "--train_datasets", datasets,
        "--test_datasets", datasets,
        "--epochs", "2",
        "--batch_size", "4",
        "--batch_size_eval", "8",
        "--max_seq_len", "64",
        "--learning_rate", "1e-3",
        "--dataloader_num_workers", "0",
        "--log_per_updates", "2",
        "--transformer_cache", str(output_dir / ".cache"),
        "--output_dir", str(output_dir),
        *extra,
    ]


def strict_json(path: Path):
    """Parse a file as JSON that holds real numbers only (no NaN or Infinity)."""
    def refuse(name: str):
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    state_a, state_b = load_checkpoint(a)["state"], load_checkpoint(b)["state"]
    assert state_a.keys() == state_b.keys()
    for key, value in state_a.items():
        assert torch.equal(value, state_b[key]), f"{key} differs between {a.name} and {b.name}"


@contextlib.contextmanager
def keeping_resume_states() -> Iterator[None]:
    """While active, every save of ``train.main`` also copies ``<output_dir>/last.pt`` to
    ``<output_dir>/resume_states/<weights file name>``: the resumable state as it was at that save
    (a run keeps only the newest), so tests can resume from any point of one straight run."""
    import train

    real_save = train.save

    def save_and_keep(t, name: str, epoch: int, batches_done: int) -> None:
        real_save(t, name, epoch, batches_done)
        if t.dist.is_main:
            (t.output_dir / "resume_states").mkdir(exist_ok=True)
            shutil.copy(t.output_dir / "last.pt", t.output_dir / "resume_states" / name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "save", save_and_keep)
        yield


def resume_state(out: Path, name: str) -> Path:
    """The ``last.pt`` that ``out``'s run (made under ``keeping_resume_states``) had right after saving ``name``."""
    return out / "resume_states" / name


RESUME_FLAGS = {"plain": (), "dropout_w+adv": ("--dropout_w", "0.1", "--adv_train")}


@pytest.fixture(scope="module")
def straight(tiny_model_dir, features_dir, tmp_path_factory) -> Callable[[str], Path]:
    """``straight(name)``: the output folder of an uninterrupted 2-epoch run with ``RESUME_FLAGS[name]``
    (also checkpointing and evaluating every 3 updates), run once per module."""
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            out = tmp_path_factory.mktemp("straight")
            extra = ("--glue_format_on", "--save_per_updates_on", "--save_per_updates", "3", *RESUME_FLAGS[name])
            with keeping_resume_states():
                main(train_args(tiny_model_dir, features_dir, out, *extra))
            runs[name] = out
        return runs[name]

    return get


# ---- outputs of a run ------------------------------------------------------------------------
def test_run_writes_scores_tsvs_config_and_checkpoints(straight, features_dir):
    out = straight("plain")
    for epoch in (0, 1):
        rte = strict_json(out / f"rte_dev_scores_epoch_{epoch}.json")
        assert list(rte) == SCORE_KEYS
        assert set(rte["metrics"]) == {"ACC"} and 0 <= rte["metrics"]["ACC"] <= 100
        assert rte["uids"] == [str(i) for i in range(12)]
        assert len(rte["scores"]) == 24 and all(isinstance(s, float) for s in rte["scores"])
        pairs = [rte["scores"][i : i + 2] for i in range(0, 24, 2)]
        assert all(abs(sum(p) - 1) < 1e-5 for p in pairs)
        assert rte["predictions"] == [int(p[1] > p[0]) for p in pairs]
        gold = [json.loads(line)["label"] for line in (features_dir / "rte_dev.json").read_text().splitlines()]
        accuracy = 100 * sum(p == g for p, g in zip(rte["predictions"], gold)) / 12
        assert rte["metrics"]["ACC"] == pytest.approx(accuracy)

        stsb = strict_json(out / f"stsb_dev_scores_epoch_{epoch}.json")
        assert list(stsb) == SCORE_KEYS and set(stsb["metrics"]) == {"Pearson", "Spearman"}
        assert all(isinstance(v, float) for v in stsb["metrics"].values())
        assert stsb["predictions"] == stsb["scores"] and len(stsb["scores"]) == 6

        tsv = (out / f"rte_dev_scores_epoch_{epoch}.tsv").read_text().splitlines()
        assert tsv[0] == "index\tprediction" and len(tsv) == 13
        rows = [line.split("\t") for line in tsv[1:]]
        assert [r[0] for r in rows] == [str(i) for i in range(12)]
        assert [r[1] for r in rows] == [["not_entailment", "entailment"][p] for p in rte["predictions"]]
        assert (out / f"stsb_dev_scores_epoch_{epoch}.tsv").read_text().startswith("index\tprediction\n")
    # Per-update evaluations are named by update count.
    assert sorted(p.name for p in out.glob("rte_dev_scores_updates_*.json")) == [
        "rte_dev_scores_updates_3.json", "rte_dev_scores_updates_6.json", "rte_dev_scores_updates_9.json"
    ]

    config = strict_json(out / "config.json")
    assert config["data"]["train_datasets"] == ["rte", "stsb"] and config["train"]["epochs"] == 2
    assert [t["name"] for t in config["task_defs"]] == ["rte", "stsb"]
    # Weight files: weights, config, epoch and updates only (no optimizer state); last.pt: the full state.
    assert sorted(p.name for p in out.glob("*.pt")) == [
        "last.pt", "model_0.pt", "model_0_3.pt", "model_1.pt", "model_1_6.pt", "model_1_9.pt"
    ]
    for epoch in (0, 1):
        checkpoint = load_checkpoint(out / f"model_{epoch}.pt")
        assert set(checkpoint) == WEIGHTS_KEYS
        assert checkpoint["updates"] == UPDATES_PER_EPOCH * (epoch + 1) and checkpoint["epoch"] == epoch
        json.dumps(checkpoint["config"])  # plain JSON-safe data
        assert any(k.startswith("scoring_list.1.") for k in checkpoint["state"])
    last = load_checkpoint(out / "last.pt")
    assert RESUME_KEYS <= set(last) and (last["epoch"], last["updates"]) == (1, 2 * UPDATES_PER_EPOCH)
    assert_same_weights(out / "last.pt", out / "model_1.pt")
    json.dumps(last["history"])
    assert (out / "last.pt").stat().st_size > (out / "model_1.pt").stat().st_size
    sampler = load_checkpoint(resume_state(out, "model_0_3.pt"))["sampler"]
    assert (sampler["epoch"], sampler["start"]) == (0, 3) and sampler["config"]["batch_size"] == 4
    end_of_epoch = load_checkpoint(resume_state(out, "model_0.pt"))["sampler"]
    assert (end_of_epoch["epoch"], end_of_epoch["start"]) == (1, 0)
    assert (out / "mt-dnn-train.log").read_text().count("saved") == 5


def test_glue_format_on_writes_tsvs_only_for_tasks_that_have_them(tiny_model_dir, features_dir, tmp_path):
    # NER predictions are tag lists: no GLUE submission row exists for them, and asking for the
    # GLUE format must not crash the run.
    args = train_args(tiny_model_dir, features_dir, tmp_path, "--epochs", "1", "--glue_format_on", datasets="ner,rte")
    args[args.index("--task_def") + 1] = str(tmp_path / "tasks.yml")
    (tmp_path / "tasks.yml").write_text(
        GLUE_YAML.read_text() + (REPO / "experiments" / "ner" / "ner_task_def.yml").read_text()
    )
    main(args)
    assert strict_json(tmp_path / "ner_dev_scores_epoch_0.json")["metrics"]["SeqEval"] >= 0
    assert (tmp_path / "rte_dev_scores_epoch_0.tsv").is_file()
    assert not (tmp_path / "ner_dev_scores_epoch_0.tsv").exists()


def test_scores_come_from_the_saved_weights(tiny_model_dir, features_dir, tmp_path):
    out = tmp_path / "fp32"  # float32: the scores are recomputed below in float32
    main(train_args(tiny_model_dir, features_dir, out, "--precision", "fp32"))
    config = json.loads((out / "config.json").read_text())
    defs = load_task_defs(GLUE_YAML)
    # The run's own attention kernel (--attn_implementation auto: eager on a CPU).
    opts = ModelOptions(init_checkpoint=str(tiny_model_dir), attn_implementation=config["model"]["attn_implementation"])
    network = SANBertNetwork(load_encoder(opts), [defs["rte"], defs["stsb"]], opts, sep_token_id=102)
    network.load_state_dict(load_checkpoint(out / "model_1.pt")["state"])
    network.eval()
    dataset = TaskDataset(features_dir / "rte_dev.json", defs["rte"], "rte")
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=Collater(0, 64))  # dataset order
    with torch.no_grad():
        probs = torch.cat([network(b.input_ids, b.token_type_ids, b.attention_mask, 0).softmax(-1) for b in loader])
    saved = strict_json(out / "rte_dev_scores_epoch_1.json")["scores"]
    torch.testing.assert_close(probs.flatten(), torch.tensor(saved), atol=1e-5, rtol=1e-5)


# ---- exact resume ----------------------------------------------------------------------------
@pytest.mark.parametrize("checkpoint", ["model_0.pt", "model_0_3.pt"], ids=["epoch_end", "mid_epoch"])
@pytest.mark.parametrize("flags", list(RESUME_FLAGS))
def test_resume_is_bit_identical(flags, checkpoint, straight, tiny_model_dir, features_dir, tmp_path):
    out = straight(flags)
    resumed = tmp_path / "resumed"
    resume = ("--resume", "--model_ckpt", str(resume_state(out, checkpoint)))
    main(train_args(tiny_model_dir, features_dir, resumed, *resume, *RESUME_FLAGS[flags]))
    assert_same_weights(out / "model_1.pt", resumed / "model_1.pt")
    straight_ckpt, resumed_ckpt = load_checkpoint(out / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert resumed_ckpt["updates"] == straight_ckpt["updates"] == 2 * UPDATES_PER_EPOCH
    assert resumed_ckpt["scheduler"] == straight_ckpt["scheduler"]
    for name in ("rte_dev_scores_epoch_1.json", "stsb_dev_scores_epoch_1.json"):
        assert (resumed / name).read_text() == (out / name).read_text()
    if checkpoint == "model_0_3.pt":
        # The history (epoch mean losses, dev metrics) goes on from the state as if never interrupted.
        assert strict_json(resumed / "history.json")["epochs"] == strict_json(out / "history.json")["epochs"]
        assert_same_weights(out / "model_0.pt", resumed / "model_0.pt")
    else:
        assert not (resumed / "model_0.pt").exists()


def test_resume_reads_last_pt_of_the_output_dir_by_default(straight, tiny_model_dir, features_dir, tmp_path):
    # A run folder as an interrupted run leaves it after epoch 0: last.pt and epoch 0's score files.
    out = straight("plain")
    shutil.copy(resume_state(out, "model_0.pt"), tmp_path / "last.pt")
    for name in ("rte_dev_scores_epoch_0.json", "stsb_dev_scores_epoch_0.json"):
        shutil.copy(out / name, tmp_path / name)
    main(train_args(tiny_model_dir, features_dir, tmp_path, "--resume"))
    assert_same_weights(out / "model_1.pt", tmp_path / "model_1.pt")
    assert load_checkpoint(tmp_path / "last.pt")["updates"] == 2 * UPDATES_PER_EPOCH
    # Epoch 0 was saved before it was evaluated: its dev metrics come back from its score files.
    assert strict_json(tmp_path / "history.json")["epochs"] == strict_json(out / "history.json")["epochs"]


def test_a_weights_only_file_cannot_resume(straight, tiny_model_dir, features_dir, tmp_path):
    out = straight("plain")
    args = train_args(tiny_model_dir, features_dir, tmp_path, "--resume", "--model_ckpt", str(out / "model_0.pt"))
    with pytest.raises(MTDNNInputError, match=rf"weights-only file .*: resume from {out / 'last.pt'}"):
        main(args)


def test_resume_with_another_batch_size_is_refused(straight, tiny_model_dir, features_dir, tmp_path):
    out = straight("plain")
    resume = ("--resume", "--model_ckpt", str(resume_state(out, "model_0_3.pt")))
    args = train_args(tiny_model_dir, features_dir, tmp_path, *resume)
    args[args.index("--batch_size") + 1] = "2"
    with pytest.raises(MTDNNInputError, match="batch_size was 4 when the checkpoint was saved, now 2"):
        main(args)


def test_resume_with_dataloader_workers_is_bit_identical(straight, tiny_model_dir, features_dir, tmp_path):
    out = straight("plain")
    extra = ("--resume", "--model_ckpt", str(resume_state(out, "model_0_3.pt")), "--dataloader_num_workers", "2")
    main(train_args(tiny_model_dir, features_dir, tmp_path, *extra))
    assert_same_weights(out / "model_1.pt", tmp_path / "model_1.pt")


def test_resume_with_grad_accumulation_across_epochs_is_bit_identical(tiny_model_dir, features_dir, tmp_path):
    with keeping_resume_states():
        main(train_args(tiny_model_dir, features_dir, tmp_path / "a", "--grad_accumulation_step", "2"))
    resume = ("--resume", "--model_ckpt", str(resume_state(tmp_path / "a", "model_0.pt")))
    main(train_args(tiny_model_dir, features_dir, tmp_path / "b", "--grad_accumulation_step", "2", *resume))
    assert load_checkpoint(tmp_path / "a" / "model_1.pt")["updates"] == UPDATES_PER_EPOCH  # (2 × 5) // 2
    assert_same_weights(tmp_path / "a" / "model_1.pt", tmp_path / "b" / "model_1.pt")


@pytest.mark.parametrize("flags", list(RESUME_FLAGS))
def test_saving_per_update_does_not_change_training(flags, straight, tiny_model_dir, features_dir, tmp_path):
    main(train_args(tiny_model_dir, features_dir, tmp_path, *RESUME_FLAGS[flags]))
    assert_same_weights(straight(flags) / "model_1.pt", tmp_path / "model_1.pt")


def test_another_seed_trains_differently(tiny_model_dir, features_dir, tmp_path):
    # Guards the resume tests: weights must depend on the run's randomness at all.
    main(train_args(tiny_model_dir, features_dir, tmp_path / "a", "--epochs", "1", "--seed", "1", datasets="rte"))
    main(train_args(tiny_model_dir, features_dir, tmp_path / "b", "--epochs", "1", "--seed", "2", datasets="rte"))
    a = load_checkpoint(tmp_path / "a" / "model_0.pt")["state"]
    b = load_checkpoint(tmp_path / "b" / "model_0.pt")["state"]
    assert not torch.equal(a["bert.encoder.layer.0.output.dense.weight"], b["bert.encoder.layer.0.output.dense.weight"])


def test_pad_to_multiple_of_pads_the_training_batches(tiny_model_dir, features_dir, tmp_path, monkeypatch):
    lengths: list[tuple[int, int]] = []
    collate = Collater.__call__

    def recording(self, items):
        batch = collate(self, items)
        lengths.append((self.pad_to_multiple_of, batch.input_ids.shape[1]))
        return batch

    monkeypatch.setattr(Collater, "__call__", recording)
    main(train_args(tiny_model_dir, features_dir, tmp_path, "--epochs", "1", "--pad_to_multiple_of", "16", datasets="rte"))
    trained = [n for multiple, n in lengths if multiple == 16]
    assert len(trained) >= 3 and all(n % 16 == 0 or n == 64 for n in trained)
    assert all(multiple == 1 for multiple, _ in lengths if multiple != 16)  # evaluation batches are not rounded
    assert (tmp_path / "rte_dev_scores_epoch_0.json").is_file()

# ---- --init_checkpoint from a saved run ------------------------------------------------------
def test_init_checkpoint_from_a_saved_run_contributes_weights(straight, tiny_model_dir, features_dir, tmp_path):
    out = straight("plain")
    source = out / "model_1.pt"
    args = train_args(source, features_dir, tmp_path, "--epochs", "1", "--learning_rate", "0", datasets="rte")
    with pytest.raises(MTDNNInputError, match="--tokenizer"):
        main(args)
    main(args + ["--tokenizer", str(tiny_model_dir)])
    before, after = load_checkpoint(source)["state"], load_checkpoint(tmp_path / "model_0.pt")["state"]
    # The rte head is scoring_list.0 in both runs; the stsb head of the source is not used.
    assert set(after) == {k for k in before if not k.startswith("scoring_list.1.")}
    for key, value in after.items():
        assert torch.equal(value, before[key]), key
    scores = strict_json(tmp_path / "rte_dev_scores_epoch_0.json")["scores"]
    assert scores == pytest.approx(strict_json(out / "rte_dev_scores_epoch_1.json")["scores"], abs=1e-6)
    # Options come from the command line, never from the checkpoint.
    assert strict_json(tmp_path / "config.json")["data"]["train_datasets"] == ["rte"]


def test_init_checkpoint_matches_heads_by_task_name(straight, tiny_model_dir, features_dir, tmp_path):
    source = straight("plain") / "model_1.pt"
    args = train_args(source, features_dir, tmp_path, "--epochs", "1", "--learning_rate", "0", datasets="stsb")
    main(args + ["--tokenizer", str(tiny_model_dir)])
    before, after = load_checkpoint(source)["state"], load_checkpoint(tmp_path / "model_0.pt")["state"]
    assert torch.equal(after["scoring_list.0.proj.weight"], before["scoring_list.1.proj.weight"])


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy_pre_torch_1_6"])
def test_init_checkpoint_of_the_original_format(zip_format, tiny_model_dir, features_dir, tmp_path):
    # As released MT-DNN files: encoder only, "bert." prefix, the 11 BERT config keys, old
    # LayerNorm gamma/beta names and a position-id buffer; saved in 2019, before torch's zip format.
    encoder = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir)))
    state = {}
    for key, value in encoder.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state["bert." + key] = value
    state["bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    source = tmp_path / "mt_dnn_tiny.pt"
    config = {key: getattr(encoder.config, key) for key in BERT_CONFIG_KEYS}
    torch.save({"state": state, "config": config}, source, _use_new_zipfile_serialization=zip_format)
    out = tmp_path / "out"
    main(train_args(source, features_dir, out, "--epochs", "1", "--learning_rate", "0", "--tokenizer", str(tiny_model_dir)))
    trained = load_checkpoint(out / "model_0.pt")["state"]
    for key, value in encoder.state_dict().items():
        assert torch.equal(trained["bert." + key], value), key


# ---- bad input -------------------------------------------------------------------------------
def broken_data_dir(tmp_path: Path, features_dir: Path, line_no: int, line: str, name: str = "rte") -> Path:
    """A copy of the rte fixture (as dataset ``name``) whose line ``line_no`` is replaced."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    lines = (features_dir / "rte_train.json").read_text().splitlines()
    lines[line_no - 1] = line
    (data / f"{name}_train.json").write_text("\n".join(lines) + "\n")
    shutil.copy(features_dir / "rte_dev.json", data / f"{name}_dev.json")
    return data


def test_missing_training_file(tiny_model_dir, features_dir, tmp_path):
    with pytest.raises(MTDNNInputError, match=r"mrpc_train\.json: training file of dataset 'mrpc' not found"):
        main(train_args(tiny_model_dir, features_dir, tmp_path, datasets="mrpc"))


def test_missing_test_file(tiny_model_dir, features_dir, tmp_path):
    args = train_args(tiny_model_dir, features_dir, tmp_path, datasets="rte") + ["--test_datasets", "rte,qnli"]
    with pytest.raises(MTDNNInputError, match="test dataset 'qnli': neither qnli_dev.json nor qnli_test.json exists"):
        main(args)


def test_dataset_whose_task_is_not_in_the_yaml(tiny_model_dir, features_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(features_dir / "rte_train.json", data / "foo_train.json")
    shutil.copy(features_dir / "rte_dev.json", data / "foo_dev.json")
    with pytest.raises(MTDNNInputError, match="dataset 'foo': task 'foo' is not defined"):
        main(train_args(tiny_model_dir, data, tmp_path / "out", datasets="foo"))


def test_malformed_json_line(tiny_model_dir, features_dir, tmp_path):
    data = broken_data_dir(tmp_path, features_dir, 3, '{"uid": "2", "label": 1, "token_id": [101, 102')
    with pytest.raises(MTDNNInputError, match=r"rte_train\.json:3: malformed JSON"):
        main(train_args(tiny_model_dir, data, tmp_path / "out", datasets="rte"))


def test_label_out_of_range(tiny_model_dir, features_dir, tmp_path):
    row = json.loads((features_dir / "rte_train.json").read_text().splitlines()[1])
    data = broken_data_dir(tmp_path, features_dir, 2, json.dumps({**row, "label": 5}))
    with pytest.raises(MTDNNInputError, match=r"rte_train\.json:2: label 5 is not a class id in \[0, 2\)"):
        main(train_args(tiny_model_dir, data, tmp_path / "out", datasets="rte"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--fp16", "--bf16"], "--fp16 and --bf16 are exclusive"),
        (["--grad_accumulation_step", "0"], "--grad_accumulation_step must be at least 1"),
        (["--warmup_schedule", "warmup_exp"], "--warmup_schedule must be one of"),
        (["--train_datasets", ""], "--train_datasets is empty"),
    ],
)
def test_bad_flag_combinations(flags, message):
    with pytest.raises(MTDNNInputError, match=message):
        options_from_args(build_parser().parse_args(flags))


def test_flag_parsing_and_upstream_spellings():
    run, data, model, train, adv = options_from_args(
        build_parser().parse_args(
            ["--train_dataset", "rte,stsb", "--test_dataset", "rte", "--warmup_schedule", "warmup_cosine",
             "--answer_num_turn", "3", "--adv_train", "--adv_p_norm", "l2", "--bf16"]
        )
    )
    assert data.train_datasets == ("rte", "stsb") and data.test_datasets == ("rte",)
    assert train.scheduler_type == 1 and train.bf16 and not train.fp16
    assert model.san.num_turn == 3 and adv.adv_train and adv.adv_p_norm == "l2"
    defaults = options_from_args(build_parser().parse_args([]))
    assert defaults[4].adv_train is False and defaults[3].weight_decay == 0.01 and defaults[3].scheduler_type == 0


def run_cli_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_cli_errors_are_one_line_with_exit_code_2(tiny_model_dir, features_dir, tmp_path):
    bad_json = broken_data_dir(tmp_path, features_dir, 3, "{not json")
    # Both processes start at once: most of their time is importing torch.
    processes = {
        "exclusive": run_cli_process("--fp16", "--bf16"),
        "rte_train.json:3: malformed JSON": run_cli_process(
            *train_args(tiny_model_dir, bad_json, tmp_path / "out", datasets="rte")
        ),
    }
    for expected, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, stderr
        assert "Traceback" not in stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], stderr
        assert stderr.rstrip().splitlines()[-1] == errors[0]
