"""download.sh, offline: copies from a local mirror, a file:// mirror of the real sources (sizes and SHA-256
checked), resume, and one-line errors that come fast when the network is missing or stalls."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "download.sh"
SHARED_GLUE = REPO.parent / "shared" / "data" / "glue"
FB = "dl.fbaipublicfiles.com"


def run(*args: str, cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """Run ``bash download.sh ARGS`` with this interpreter and extra environment variables."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("MTDNN_")}
    full_env.update(PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed run (fails the test when there are more)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("download.sh: error: "), lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes), the script's own bookkeeping excluded."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".download" not in p.parts}


def closed_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def mirror(tmp_path: Path) -> Path:
    """A local mirror in both accepted layouts: ``glue/RTE`` (nested) and ``MRPC`` (flat)."""
    root = tmp_path / "mirror"
    (root / "glue" / "RTE").mkdir(parents=True)
    (root / "MRPC").mkdir()
    for split in ("train", "dev", "test"):
        (root / "glue" / "RTE" / f"{split}.tsv").write_text(f"index\tsentence1\tsentence2\tlabel\n0\ta\tb\t{split}\n")
        (root / "MRPC" / f"{split}.tsv").write_text(f"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\t{split}\tx\n")
    return root


def test_from_mirror_copies_both_layouts_and_is_idempotent(tmp_path: Path, mirror: Path) -> None:
    first = run("glue", "--from", str(mirror), "--data_dir", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    assert tree(out / "RTE") == tree(mirror / "glue" / "RTE")
    assert tree(out / "MRPC") == tree(mirror / "MRPC")
    assert "not in" in first.stderr and "QQP" in first.stderr  # absent tasks are named, not fatal
    (out / "RTE" / "stale.tsv").write_text("left from an older copy\n")
    second = run("glue", "--from", str(mirror), "--data_dir", "out", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert tree(out / "RTE") == tree(mirror / "glue" / "RTE")  # a fresh copy, not a merge
    assert sorted(p.name for p in out.iterdir() if p.name != ".download") == ["MRPC", "RTE"]


def test_glue_tasks_selects_folders(tmp_path: Path, mirror: Path) -> None:
    result = run("glue", "--glue_tasks", "rte", "--from", str(mirror), "--data_dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".download") == ["RTE"]


@pytest.mark.skipif(not SHARED_GLUE.is_dir(), reason="the offline GLUE copy is not beside the repository")
def test_from_the_workplace_glue_copy(tmp_path: Path) -> None:
    result = run("glue", "--from", str(SHARED_GLUE.parent), "--data_dir", "data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for task in ("RTE", "MRPC", "STS-B", "CoLA", "diagnostic"):
        assert tree(tmp_path / "data" / task) == tree(SHARED_GLUE / task)


def test_missing_set_in_mirror_is_an_error_when_asked_for_and_a_note_under_all(tmp_path: Path, mirror: Path) -> None:
    asked = run("squad", "--from", str(mirror), cwd=tmp_path)
    assert asked.returncode == 1
    assert "no SQuAD in" in error_line(asked)
    everything = run("all", "--from", str(mirror), "--data_dir", "out", cwd=tmp_path)
    assert everything.returncode == 0, everything.stderr
    assert "no SQuAD in" in everything.stderr and (tmp_path / "out" / "RTE" / "train.tsv").is_file()


def test_models_from_mirror_go_to_mt_dnn_models(tmp_path: Path) -> None:
    model = tmp_path / "mirror" / "models" / "tiny-bert"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "bert"}\n')
    (model / "vocab.txt").write_text("[PAD]\n")
    result = run("model_only", "--from", str(tmp_path / "mirror"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "mt_dnn_models" / "tiny-bert") == tree(model)


@pytest.mark.parametrize("args", [("bogus",), ("glue", "--glue_tasks", "XNLI"), ("glue", "--from"),
                                  ("glue", "--from", "/no/such/dir")])
def test_bad_arguments_fail_with_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(*args, cwd=tmp_path, timeout=20)
    assert result.returncode == 2
    line = error_line(result)
    assert "bash download.sh [glue|scitail|snli|ner|squad|models|all|model_only]" in line
    assert not (tmp_path / "data").exists()


def test_unreachable_source_fails_fast_with_a_hint(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run("squad", cwd=tmp_path, timeout=30, MTDNN_DOWNLOAD_MIRROR=f"http://127.0.0.1:{closed_port()}")
    assert time.monotonic() - start < 20
    assert result.returncode == 1
    line = error_line(result)
    assert "cannot fetch" in line and "rajpurkar.github.io/SQuAD-explorer/dataset/train-v1.1.json" in line
    assert "--from DIR" in line
    assert not (tmp_path / "data" / "squad").exists()


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """A local server that accepts connections and never answers (a stalled transfer)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_stalled_transfer_is_abandoned(tmp_path: Path, silent_server: int) -> None:
    start = time.monotonic()
    result = run("ner", cwd=tmp_path, timeout=30, MTDNN_DOWNLOAD_MIRROR=f"http://127.0.0.1:{silent_server}",
                 MTDNN_STALL_TIMEOUT="2")
    assert time.monotonic() - start < 20
    assert result.returncode == 1
    assert "CONLL2003/train.txt" in error_line(result)


def test_models_fail_fast_when_the_hub_is_unreachable(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    start = time.monotonic()
    result = run("models", "--models", "bert-base-uncased", cwd=tmp_path, timeout=30,
                 HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="0")
    assert time.monotonic() - start < 20
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:" in error_line(result)


@pytest.fixture()
def file_mirror(tmp_path: Path) -> Path:
    """The real MRPC source files and AX.tsv laid out as a MTDNN_DOWNLOAD_MIRROR (BASE/<host>/<path>)."""
    if not SHARED_GLUE.is_dir():
        pytest.skip("the offline GLUE copy is not beside the repository")
    root = tmp_path / "web"
    senteval = root / FB / "senteval" / "senteval_data"
    glue = root / FB / "glue" / "data"
    senteval.mkdir(parents=True)
    glue.mkdir(parents=True)
    for name in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"):
        shutil.copy(SHARED_GLUE / "MRPC" / name, senteval / name)
    shutil.copy(SHARED_GLUE / "MRPC" / "dev_ids.tsv", glue / "mrpc_dev_ids.tsv")
    shutil.copy(SHARED_GLUE / "diagnostic" / "diagnostic.tsv", glue / "AX.tsv")
    return root


def test_download_checks_sums_and_builds_mrpc_as_glue_does(tmp_path: Path, file_mirror: Path) -> None:
    mirror = f"file://{file_mirror}"
    result = run("glue", "--glue_tasks", "MRPC,AX", cwd=tmp_path, MTDNN_DOWNLOAD_MIRROR=mirror)
    assert result.returncode == 0, result.stderr
    for split in ("train", "dev", "test"):  # byte for byte the GLUE download script's output
        assert (tmp_path / "data" / "MRPC" / f"{split}.tsv").read_bytes() == \
            (SHARED_GLUE / "MRPC" / f"{split}.tsv").read_bytes()
    assert (tmp_path / "data" / "diagnostic" / "diagnostic.tsv").read_bytes() == \
        (SHARED_GLUE / "diagnostic" / "diagnostic.tsv").read_bytes()
    again = run("glue", "--glue_tasks", "MRPC,AX", cwd=tmp_path, MTDNN_DOWNLOAD_MIRROR=mirror)
    assert again.returncode == 0 and again.stdout.count("already in") == 2, again.stdout


def test_partial_file_is_resumed(tmp_path: Path, file_mirror: Path) -> None:
    real = (SHARED_GLUE / "diagnostic" / "diagnostic.tsv").read_bytes()
    (tmp_path / "data" / ".download").mkdir(parents=True)
    (tmp_path / "data" / ".download" / "diagnostic.part").write_bytes(real[:5000])
    (file_mirror / FB / "glue" / "data" / "AX.tsv").write_bytes(b"X" * 5000 + real[5000:])  # only the tail is read
    result = run("glue", "--glue_tasks", "diagnostic", cwd=tmp_path, MTDNN_DOWNLOAD_MIRROR=f"file://{file_mirror}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "diagnostic" / "diagnostic.tsv").read_bytes() == real


def test_checksum_mismatch_fails_and_leaves_nothing(tmp_path: Path, file_mirror: Path) -> None:
    ax = file_mirror / FB / "glue" / "data" / "AX.tsv"
    ax.write_bytes(ax.read_bytes()[:-2] + b"?\n")  # same size, other bytes
    result = run("glue", "--glue_tasks", "AX", cwd=tmp_path, MTDNN_DOWNLOAD_MIRROR=f"file://{file_mirror}")
    assert result.returncode == 1
    assert "SHA-256" in error_line(result) and "MTDNN_SKIP_CHECKSUM=1" in result.stderr
    assert not (tmp_path / "data" / "diagnostic").exists()
    assert list((tmp_path / "data" / ".download").iterdir()) == []
    accepted = run("glue", "--glue_tasks", "AX", cwd=tmp_path, MTDNN_DOWNLOAD_MIRROR=f"file://{file_mirror}",
                   MTDNN_SKIP_CHECKSUM="1")
    assert accepted.returncode == 0 and "warning" in accepted.stderr
    assert (tmp_path / "data" / "diagnostic" / "diagnostic.tsv").read_bytes() == ax.read_bytes()
