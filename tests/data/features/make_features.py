"""Rebuild the small tokenized fixtures of this folder from real GLUE rows (SPEC §3.3 layouts).

    python tests/data/features/make_features.py

Needs the offline MiniLM tokenizer and GLUE files under /work/shared; the tests only read
the JSON files this writes, so they run without either.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

GLUE = Path("/work/shared/data/glue")
TOKENIZER = "/work/shared/models/all-MiniLM-L6-v2"
OUT = Path(__file__).resolve().parent
NER_LABELS = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "X", "CLS", "SEP"]


def glue_rows(task: str, split: str, count: int) -> list[list[str]]:
    """The first ``count`` data rows of a GLUE TSV (header skipped)."""
    lines = (GLUE / task / f"{split}.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    return [line.split("\t") for line in lines[:count]]


def pair_row(tok, uid: str, label, premise: str, hypothesis: str | None) -> dict:
    enc = tok(premise, hypothesis, truncation="longest_first", max_length=512)
    return {
        "uid": uid,
        "label": label,
        "token_id": enc["input_ids"],
        "type_id": enc["token_type_ids"],
        "attention_mask": enc["attention_mask"],
    }


def write(name: str, rows: list[dict]) -> None:
    (OUT / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    rte_labels = ["not_entailment", "entailment"]
    write(
        "rte_train.json",
        [pair_row(tok, r[0], rte_labels.index(r[3]), r[1], r[2]) for r in glue_rows("RTE", "train", 12)],
    )
    write(
        "stsb_train.json",
        [pair_row(tok, str(i), float(r[-1]), r[-3], r[-2]) for i, r in enumerate(glue_rows("STS-B", "train", 6))],
    )
    cola = (GLUE / "CoLA" / "train.tsv").read_text(encoding="utf-8").splitlines()[:8]
    write("cola_train.json", [pair_row(tok, str(i), int(r.split("\t")[1]), r.split("\t")[3], None) for i, r in enumerate(cola)])

    # Ranking: a question with one entailed and one other sentence, in the order the rows come.
    qnli = glue_rows("QNLI", "dev", 40)
    ranked = []
    for first, second in zip(qnli[0::2], qnli[1::2]):
        if first[3] == second[3]:
            continue
        olabel = [int(r[3] == "entailment") for r in (first, second)]
        encs = [tok(first[1], r[2], truncation="longest_first", max_length=512) for r in (first, second)]
        ranked.append(
            {
                "uid": str(len(ranked)),
                "label": olabel.index(1),
                "token_id": [e["input_ids"] for e in encs],
                "type_id": [e["token_type_ids"] for e in encs],
                "ruid": [first[0], second[0]],
                "olabel": olabel,
                "attention_mask": [e["attention_mask"] for e in encs],
            }
        )
        if len(ranked) == 6:
            break
    write("qnnli_train.json", ranked)

    sentences = [
        (["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
         ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["BRUSSELS", "1996-08-22"], ["B-LOC", "O"]),
        (["The", "European", "Commission", "said", "on", "Thursday", "it", "disagreed", "."],
         ["O", "B-ORG", "I-ORG", "O", "O", "O", "O", "O", "O"]),
    ]
    tagged = []
    for uid, (words, tags) in enumerate(sentences):
        token_id, label = [tok.cls_token_id], [NER_LABELS.index("CLS")]
        for word, tag in zip(words, tags):
            pieces = tok(word, add_special_tokens=False)["input_ids"]
            token_id += pieces
            label += [NER_LABELS.index(tag)] + [NER_LABELS.index("X")] * (len(pieces) - 1)
        token_id.append(tok.sep_token_id)
        label.append(NER_LABELS.index("SEP"))
        tagged.append({"uid": str(uid), "label": label, "token_id": token_id, "type_id": [0] * len(token_id)})
    write("ner_train.json", tagged)

    question, context, answer = "Who wrote the report?", "The report was written by the European Commission in Brussels.", "the European Commission"
    enc = tok(question, context, return_offsets_mapping=True)
    start_char = context.lower().index(answer.lower())
    end_char = start_char + len(answer)
    seq_ids = enc.sequence_ids()
    start = next(i for i, (s, _) in enumerate(enc["offset_mapping"]) if seq_ids[i] == 1 and s == start_char)
    end = next(i for i, (_, e) in enumerate(enc["offset_mapping"]) if seq_ids[i] == 1 and e == end_char)
    span_row = {
        "uid": "q0",
        "token_id": enc["input_ids"],
        "mask": enc["attention_mask"],
        "type_id": enc["token_type_ids"],
        "label": [start, end, 0],
    }
    write("squad_train.json", [span_row])


if __name__ == "__main__":
    main()
