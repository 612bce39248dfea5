"""index: a question bank embedded once, for `python -m mqp search`, by the encoders of
retrieval.method: the exported bi-encoder (models/merged), the zero-shot model, or both for fusion.
The bank is MQP's questions (retrieval.bank: data/prepared) or a CSV of your own (retrieval.bank: its
path, retrieval.bank_column: its question column); rows without a question, or repeating an earlier
one, are dropped with one line each. The verdict (fusion's weight, the threshold on the top hit's
score and its calibration) comes from the retrieval stage, chosen on the validation split, and is
saved with the index. DVC rebuilds the index when a model, the bank, the verdict or these params
change, and only then."""

import json
import sys
import time
from pathlib import Path

import numpy as np

from mqp.cli import stage
from mqp.files import atomic_dir, write_json
from mqp.paths import INDEX_DIR, INDEX_META, MERGED_DIR, VERDICT_JSON
from mqp.architectures import bi_encoder, exported_architecture
from mqp.banks import Index, drop_lines, is_mqp_bank, mqp_bank, read_bank_csv, save_index
from mqp.nearest import build_hnsw
from mqp.search import base_model, encode


ENCODER_NAMES = {"zeroshot": "the zero-shot model", "lora": str(MERGED_DIR)}


def load_bank(retrieval):
    """(the bank's id and question columns, where it came from)."""
    if is_mqp_bank(retrieval.bank):  # MQP's, or your own pairs' where data/raw holds them
        return mqp_bank(), f"every question of {retrieval.bank}"
    path = Path(retrieval.bank)
    bank, drops = read_bank_csv(path, retrieval.bank_column)
    for line in drop_lines(path, drops):
        print(f"index: {line}", file=sys.stderr)
    return bank, str(path)


def encoders(params, verdict: dict) -> dict:
    """The encoders the method needs, by name, and how to load each again at search time."""
    specs = {}
    if verdict["method"] in ("zeroshot", "fusion"):
        specs["zeroshot"] = {"name": params.model.name, "pooling": params.model.pooling,
                             "max_length": params.model.max_length}
    if verdict["method"] in ("lora", "fusion"):
        specs["lora"] = {"path": str(MERGED_DIR)}
    return specs


def load_encoder(name: str, spec: dict):
    return base_model(spec["name"], spec["pooling"], spec["max_length"]) if name == "zeroshot" else bi_encoder.load_exported(Path(spec["path"]))[0]


def parts(verdict: dict) -> list[tuple[str, float]]:
    """Each encoder's factor in the searched vectors: fusion's score cos(zero-shot) + w cos(LoRA) is
    the inner product of [zero-shot, sqrt(w) LoRA] with the same for the query."""
    if verdict["method"] == "fusion":
        return [("zeroshot", 1.0), ("lora", float(np.sqrt(verdict["fusion_weight"])))]
    return [(verdict["method"], 1.0)]


@stage("index")
def main(params) -> None:
    retrieval = params.retrieval
    exported = exported_architecture(MERGED_DIR)
    if not exported.EMBEDS_QUESTIONS and MERGED_DIR.is_dir():
        # A cross-encoder experiment still runs the whole pipeline: its index says why it is empty.
        with atomic_dir(INDEX_DIR) as scratch:
            write_json(scratch / INDEX_META, {"architecture": exported.NAME, "size": 0})
        print(f"index: skipped, {bi_encoder.BI_ENCODER_NEEDED.format(folder=MERGED_DIR)}")
        return
    verdict = json.loads(VERDICT_JSON.read_text())
    bank, source = load_bank(retrieval)
    specs = encoders(params, verdict)
    start = time.perf_counter()
    vectors = {name: encode(load_encoder(name, spec), bank["question"], params.eval.batch_size, progress=True) for name, spec in specs.items()}
    seconds = time.perf_counter() - start
    searched = np.hstack([factor * vectors[name] for name, factor in parts(verdict)]).astype(np.float32)
    index = Index(searched, bank["question"].tolist(), bank["id"].tolist())
    hnsw = build_hnsw(searched, retrieval.hnsw_m, retrieval.hnsw_ef_construction) if retrieval.search == "hnsw" else None
    meta = {"architecture": bi_encoder.NAME, "bank": retrieval.bank, "search": retrieval.search,
            "hnsw_ef_search": retrieval.hnsw_ef_search, "encoders": specs, "parts": parts(verdict), "verdict": verdict}
    with atomic_dir(INDEX_DIR) as scratch:
        save_index(index, scratch, meta, hnsw)
    print(f"index: {len(bank)} questions ({source}) embedded for {verdict['method']} search "
          f"({' and '.join(ENCODER_NAMES[name] for name in specs)}) into {INDEX_DIR}, {searched.shape[1]} dimensions, "
          f"{retrieval.search} search; {seconds:.1f} s, {len(bank) * len(specs) / seconds:.0f} questions/s")


if __name__ == "__main__":
    main()
