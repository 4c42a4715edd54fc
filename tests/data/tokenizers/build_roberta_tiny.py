"""Build the tiny RoBERTa-style tokenizer fixture in ``roberta_tiny/`` (byte-level BPE, no type ids).

    python tests/data/tokenizers/build_roberta_tiny.py

Trained on the sentences of the real GLUE RTE train file; the saved files are committed, so
tests never run this. Special tokens follow RoBERTa: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
``<unk>`` 3, ``<mask>`` 4; pairs become ``<s> a </s></s> b </s>``.
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

GLUE_RTE_TRAIN = Path("/work/shared/data/glue/RTE/train.tsv")
OUT_DIR = Path(__file__).resolve().parent / "roberta_tiny"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
VOCAB_SIZE = 500


def sentences(path: Path) -> list[str]:
    """Premises and hypotheses of a GLUE RTE file (header skipped)."""
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    return [cell for row in rows for cell in row.split("\t")[1:3]]


def build(out_dir: Path = OUT_DIR) -> None:
    """Train the byte-level BPE and save it as a ``PreTrainedTokenizerFast`` folder."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(sentences(GLUE_RTE_TRAIN), trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=512,
    )
    wrapped.save_pretrained(str(out_dir))
    # transformers 5 records its own class name; the 4.x-compatible alias loads in both.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    build()
