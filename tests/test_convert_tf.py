"""``scripts/convert_tf_to_pt.py`` on a tiny TF1 BERT checkpoint written with Google's variable names (plus Adam
slots, ``global_step`` and ``cls/*`` pre-training heads to skip): the weights land where a Hugging Face BertModel
expects them, and the converted encoder computes what a numpy BERT computes straight from the TF variables.
Runs where TensorFlow is installed (``pip install -e ".[tf]"``); skipped elsewhere."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import erf

from data_utils.errors import MTDNNInputError
from mt_dnn.encoder import load_encoder
from mt_dnn.options import ModelOptions
from mt_dnn.state_keys import BERT_CONFIG_KEYS
from scripts.convert_tf_to_pt import main as convert_main

tf = pytest.importorskip("tensorflow")

CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 8,
    "initializer_range": 0.02,
    "intermediate_size": 16,
    "max_position_embeddings": 16,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
    "vocab_size": 30,
}


def bert_variables(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Google BERT's TF variable names and shapes for ``CONFIG`` (dense kernels are [in, out])."""
    h, i = CONFIG["hidden_size"], CONFIG["intermediate_size"]

    def dense(name: str, n_in: int, n_out: int) -> dict[str, np.ndarray]:
        return {f"{name}/kernel": rng.normal(0, 0.3, (n_in, n_out)), f"{name}/bias": rng.normal(0, 0.1, n_out)}

    def norm(name: str) -> dict[str, np.ndarray]:
        return {f"{name}/gamma": 1 + rng.normal(0, 0.1, h), f"{name}/beta": rng.normal(0, 0.1, h)}

    variables = {
        "bert/embeddings/word_embeddings": rng.normal(0, 0.5, (CONFIG["vocab_size"], h)),
        "bert/embeddings/token_type_embeddings": rng.normal(0, 0.5, (CONFIG["type_vocab_size"], h)),
        "bert/embeddings/position_embeddings": rng.normal(0, 0.5, (CONFIG["max_position_embeddings"], h)),
        **norm("bert/embeddings/LayerNorm"),
        **dense("bert/pooler/dense", h, h),
    }
    for layer in range(CONFIG["num_hidden_layers"]):
        scope = f"bert/encoder/layer_{layer}"
        for part in ("query", "key", "value"):
            variables.update(dense(f"{scope}/attention/self/{part}", h, h))
        variables.update(dense(f"{scope}/attention/output/dense", h, h))
        variables.update(norm(f"{scope}/attention/output/LayerNorm"))
        variables.update(dense(f"{scope}/intermediate/dense", h, i))
        variables.update(dense(f"{scope}/output/dense", i, h))
        variables.update(norm(f"{scope}/output/LayerNorm"))
    return {name: value.astype(np.float32) for name, value in variables.items()}


def write_tf_checkpoint(folder: Path, variables: dict[str, np.ndarray]) -> None:
    """``bert_config.json`` and a TF1 ``Saver`` checkpoint that also holds what conversion must skip."""
    extra = {f"{name}/adam_m": np.zeros_like(v) for name, v in variables.items()}
    extra.update({f"{name}/adam_v": np.ones_like(v) for name, v in variables.items()})
    extra["global_step"] = np.array(1000, dtype=np.int64)
    extra["cls/predictions/output_bias"] = np.zeros(CONFIG["vocab_size"], dtype=np.float32)
    extra["cls/seq_relationship/output_weights"] = np.zeros((2, CONFIG["hidden_size"]), dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bert_config.json").write_text(json.dumps(CONFIG))
    with tf.Graph().as_default():
        for name, value in {**variables, **extra}.items():
            tf.compat.v1.Variable(value, name=name)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(folder / "bert_model.ckpt"))


def numpy_bert(v: dict[str, np.ndarray], ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BERT's forward pass written from the paper's equations over the TF variables: (sequence output, pooled)."""
    h, heads = CONFIG["hidden_size"], CONFIG["num_attention_heads"]
    d = h // heads

    def norm(x: np.ndarray, scope: str) -> np.ndarray:
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * v[f"{scope}/gamma"] + v[f"{scope}/beta"]

    def dense(x: np.ndarray, scope: str) -> np.ndarray:
        return x @ v[f"{scope}/kernel"] + v[f"{scope}/bias"]

    x = v["bert/embeddings/word_embeddings"][ids] + v["bert/embeddings/token_type_embeddings"][types]
    x = norm(x + v["bert/embeddings/position_embeddings"][: ids.shape[1]], "bert/embeddings/LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for layer in range(CONFIG["num_hidden_layers"]):
        s = f"bert/encoder/layer_{layer}"
        q, k, val = (dense(x, f"{s}/attention/self/{p}") for p in ("query", "key", "value"))
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d).transpose(0, 2, 1, 3)  # noqa: E731
        scores = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ split(val)).transpose(0, 2, 1, 3).reshape(x.shape)
        x = norm(x + dense(context, f"{s}/attention/output/dense"), f"{s}/attention/output/LayerNorm")
        inner = dense(x, f"{s}/intermediate/dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = norm(x + dense(inner, f"{s}/output/dense"), f"{s}/output/LayerNorm")
    return x, np.tanh(dense(x[:, 0], "bert/pooler/dense"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[dict[str, np.ndarray], Path]:
    root = tmp_path_factory.mktemp("tf_bert")
    variables = bert_variables(np.random.default_rng(7))
    write_tf_checkpoint(root / "uncased_tiny", variables)
    out = root / "bert_tiny.pt"
    convert_main(["--tf_checkpoint_root", str(root / "uncased_tiny"), "--pytorch_checkpoint_path", str(out)])
    return variables, out


def test_released_format_with_weights_in_place(converted):
    variables, out = converted
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"state", "config"} and saved["config"] == {key: CONFIG[key] for key in BERT_CONFIG_KEYS}
    state = saved["state"]
    assert not any("adam" in key or "cls" in key or "global_step" in key for key in state)
    assert np.array_equal(state["bert.embeddings.word_embeddings.weight"].numpy(), variables["bert/embeddings/word_embeddings"])
    assert np.array_equal(state["bert.embeddings.LayerNorm.weight"].numpy(), variables["bert/embeddings/LayerNorm/gamma"])
    layer = "bert/encoder/layer_1"
    assert np.array_equal(state["bert.encoder.layer.1.attention.self.query.weight"].numpy(), variables[f"{layer}/attention/self/query/kernel"].T)
    assert np.array_equal(state["bert.encoder.layer.1.output.dense.weight"].numpy(), variables[f"{layer}/output/dense/kernel"].T)
    assert np.array_equal(state["bert.encoder.layer.1.output.LayerNorm.bias"].numpy(), variables[f"{layer}/output/LayerNorm/beta"])
    assert np.array_equal(state["bert.pooler.dense.bias"].numpy(), variables["bert/pooler/dense/bias"])


def test_converted_encoder_computes_bert(converted):
    variables, out = converted
    encoder = load_encoder(ModelOptions(init_checkpoint=str(out))).eval()  # how train.py --init_checkpoint loads it
    rng = np.random.default_rng(3)
    ids = rng.integers(0, CONFIG["vocab_size"], (3, 9))
    types = np.concatenate([np.zeros((3, 5), dtype=np.int64), np.ones((3, 4), dtype=np.int64)], axis=1)
    mask = np.ones((3, 9), dtype=np.float32)
    mask[1, 6:] = 0  # one padded row
    with torch.no_grad():
        output = encoder(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                         attention_mask=torch.from_numpy(mask).long())
    sequence, pooled = numpy_bert({k: val.astype(np.float64) for k, val in variables.items()}, ids, types, mask)
    real = mask.astype(bool)
    seq_diff = np.abs(output.last_hidden_state.numpy() - sequence)[real].max()
    pool_diff = np.abs(output.pooler_output.numpy() - pooled).max()
    print(f"max |converted - numpy BERT|: sequence {seq_diff:.2g}, pooled {pool_diff:.2g}")
    assert seq_diff < 1e-5 and pool_diff < 1e-5


def test_missing_and_foreign_variables_are_errors(tmp_path):
    variables = bert_variables(np.random.default_rng(1))
    del variables["bert/encoder/layer_0/output/dense/bias"]
    write_tf_checkpoint(tmp_path / "partial", variables)
    with pytest.raises(MTDNNInputError, match=r"no TF variable for weight 'encoder\.layer\.0\.output\.dense\.bias'"):
        convert_main(["--tf_checkpoint_root", str(tmp_path / "partial"), "--pytorch_checkpoint_path", str(tmp_path / "a.pt")])
    variables = bert_variables(np.random.default_rng(1))
    variables["electra/embeddings/project/kernel"] = np.zeros((2, 2), dtype=np.float32)
    write_tf_checkpoint(tmp_path / "foreign", variables)
    with pytest.raises(MTDNNInputError, match=r"variable 'electra/embeddings/project/kernel' is not part of a BERT encoder"):
        convert_main(["--tf_checkpoint_root", str(tmp_path / "foreign"), "--pytorch_checkpoint_path", str(tmp_path / "b.pt")])
    with pytest.raises(MTDNNInputError, match=r"bert_config\.json not found"):
        convert_main(["--tf_checkpoint_root", str(tmp_path), "--pytorch_checkpoint_path", str(tmp_path / "c.pt")])
    assert not any((tmp_path / name).exists() for name in ("a.pt", "b.pt", "c.pt"))
