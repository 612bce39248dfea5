"""The search engine: a question bank embedded once (the index stage), a new question's closest bank
questions, and the verdict: "already answered" (and where) or "no match".

Two lines for a service:

    from mqp.search import Searcher
    verdict = Searcher.load("models/index").verdict("Can I drink alcohol after antibiotics?")

Scores are cosines of the method the index was built for (retrieval.method): the zero-shot model's,
LoRA's (the exported model), or their fusion, cos(zero-shot) + w x cos(LoRA). Fusion is one inner
product over the two embeddings side by side, [zero-shot, sqrt(w) x LoRA], so exact search and HNSW
run on it unchanged. The verdict's threshold and its calibration into P(already answered) were
chosen on the validation split by the retrieval stage. Only sentence-transformers and numpy do the
work: PEFT, datasets and the Trainer are never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mqp.architectures import embeds_questions
from mqp.architectures.bi_encoder import BI_ENCODER_NEEDED, load_exported
from mqp.banks import Index, load_hnsw, load_index, read_index_meta
from mqp.errors import PipelineError
from mqp.models import inference_batch_size
from mqp.nearest import hnsw_top_k, top_k
from mqp.openset import probability
from mqp.paths import INDEX_DIR, MERGED_DIR

COLUMNS = ["query", "rank", "id", "question", "score", "p_answered"]
VERDICT_COLUMNS = ["query", "verdict", "match_id", "match_question", "p_answered", "threshold"]
ANSWERED, NO_MATCH = "already answered", "no match"


def base_model(name: str, pooling: str, max_length: int):
    """The zero-shot model as sentence-transformers runs it, pooled as the pipeline pools it
    (model.pooling) and normalised: the same embeddings as the zeroshot stage's."""
    from sentence_transformers import SentenceTransformer, models

    from mqp.models import resolve_model

    encoder = models.Transformer(resolve_model(name), max_seq_length=max_length)
    if encoder.tokenizer.pad_token is None:  # GPT-2-like models have none
        encoder.tokenizer.pad_token = encoder.tokenizer.eos_token
    pooled = models.Pooling(encoder.get_word_embedding_dimension(), "mean" if pooling == "mean" else "lasttoken")
    return SentenceTransformer(modules=[encoder, pooled, models.Normalize()])


def encode(model, texts, batch_size: int | str, progress: bool = False) -> np.ndarray:
    """Unit-length float32 embeddings of texts by a sentence-transformers model (the exported
    model and base_model normalise them themselves); batch_size may be auto (eval.batch_size).
    progress: a progress bar of the batches (the index stage's, for a bank of any size)."""
    return model.encode(list(texts), batch_size=inference_batch_size(batch_size), convert_to_numpy=True,
                        show_progress_bar=progress)


@dataclass(frozen=True)
class Verdict:
    query: str
    answered: bool
    match_id: str | None  # the top hit's id and question where answered
    match_question: str | None
    p_answered: float  # P(the top hit answers the query), by the calibration
    threshold: float  # P at or above this says "already answered"

    def text(self) -> str:
        if self.answered:
            return f'{ANSWERED}: "{self.match_question}" (id {self.match_id}, P = {self.p_answered:.2f})'
        return f"{NO_MATCH} (best P = {self.p_answered:.2f}, threshold {self.threshold:.2f})"


class Searcher:
    """An index on disk with the encoders its method needs, loaded once."""

    def __init__(self, meta: dict, encoders: dict, index: Index, hnsw=None, batch_size: int | str = "auto"):
        self.meta, self.encoders, self.hnsw, self.batch_size = meta, encoders, hnsw, batch_size
        self.vectors, self.ids, self.texts = index.embeddings, index.ids, index.texts
        self.verdict_config = meta["verdict"]

    @classmethod
    def load(cls, folder: Path | str = INDEX_DIR, batch_size: int | str = "auto", ef_search: int | None = None) -> Searcher:
        """The index in `folder` and its encoders; HNSW searches with ef_search candidates (default:
        retrieval.hnsw_ef_search when the index was built)."""
        folder = Path(folder)
        meta = read_index_meta(folder)
        if not embeds_questions(meta.get("architecture")):
            raise PipelineError(BI_ENCODER_NEEDED.format(folder=MERGED_DIR))
        if "verdict" not in meta:
            raise PipelineError(f"the index in {folder} has no verdict (built by an older version): run `dvc repro index`")
        index = load_index(folder)
        encoders = {}
        if "zeroshot" in meta["encoders"]:
            spec = meta["encoders"]["zeroshot"]
            encoders["zeroshot"] = base_model(spec["name"], spec["pooling"], spec["max_length"])
        if "lora" in meta["encoders"]:
            encoders["lora"], _ = load_exported(Path(meta["encoders"]["lora"]["path"]))
        hnsw = load_hnsw(folder) if meta.get("search") == "hnsw" else None
        if ef_search is not None:
            meta = {**meta, "hnsw_ef_search": ef_search}
        return cls(meta, encoders, index, hnsw, batch_size)

    def embed(self, queries: list[str]) -> np.ndarray:
        """The queries' vectors in the index's space (fusion: both encoders side by side)."""
        parts = [weight * encode(self.encoders[name], queries, self.batch_size)
                 for name, weight in self.meta["parts"]]
        vectors = np.hstack(parts).astype(np.float32)
        if vectors.shape[1] != self.vectors.shape[1]:
            raise PipelineError(f"the index holds {self.vectors.shape[1]}-dimensional vectors and its models make "
                                f"{vectors.shape[1]}: run `dvc repro index`")
        return vectors

    def top(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.embed(queries)
        if self.hnsw is not None:
            return hnsw_top_k(self.hnsw, vectors, k, self.meta["hnsw_ef_search"])
        return top_k(self.vectors, vectors, k)

    def p_answered(self, scores) -> np.ndarray:
        return probability(scores, self.verdict_config["calibration"])

    def threshold_p(self) -> float:
        return float(self.p_answered(self.verdict_config["threshold"]))

    def search(self, queries: list[str], k: int) -> tuple[pd.DataFrame, list[Verdict]]:
        """The top k bank questions of each query, one row per hit (COLUMNS), and each query's verdict."""
        scores, positions = self.top(queries, k)
        probs = self.p_answered(scores)
        rows = [(query, rank + 1, self.ids[position], self.texts[position], round(float(score), 4), round(float(prob), 4))
                for query, hit_scores, hit_positions, hit_probs in zip(queries, scores, positions, probs)
                for rank, (score, position, prob) in enumerate(zip(hit_scores, hit_positions, hit_probs))]
        verdicts = [self.top_hit_verdict(query, hit_scores[0], hit_positions[0], hit_probs[0])
                    for query, hit_scores, hit_positions, hit_probs in zip(queries, scores, positions, probs)]
        return pd.DataFrame(rows, columns=COLUMNS), verdicts

    def top_hit_verdict(self, query: str, score: float, position: int, prob: float) -> Verdict:
        """"already answered" by the top hit where its score reaches the threshold, else "no match"."""
        answered = bool(score >= self.verdict_config["threshold"])
        return Verdict(query, answered, self.ids[position] if answered else None, self.texts[position] if answered else None,
                       round(float(prob), 4), round(self.threshold_p(), 4))

    def verdict(self, question: str) -> Verdict:
        """"already answered" (and where) or "no match", for one question."""
        question = question.strip()
        if not question:
            raise PipelineError("the question is empty: give the question to look up")
        return self.search([question], 1)[1][0]


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    return pd.DataFrame([(v.query, ANSWERED if v.answered else NO_MATCH, v.match_id or "", v.match_question or "",
                          v.p_answered, v.threshold) for v in verdicts], columns=VERDICT_COLUMNS)
