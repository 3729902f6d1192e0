"""Hard negatives mined by the model, language-aware: never a translation of the answer (``python mine.py``).

In:  a parallel corpus (``mdr.formats.parallel``: one row per (example id, language), a query and its
     positive passage), an encoder (``mdr.model.encoder.Encoder``; none for unscored random negatives)
     and ``MiningOptions`` (``conf/mining/``).
Out: ``MinedNegatives``: for every row, the corpus rows of its negatives (texts in the row's own
     language) and the statistics; ``write_mined_files`` writes the corpus again with ``negatives``
     (and ``negative_ids``, their example ids) filled, one file per input file, beside
     ``mining_record.json`` (how they were made, the statistics). ``data=parallel_files
     data.num_hard_negatives=k`` reads the files unchanged.

The candidate pool of a language is the positive passages of that language's rows. For the query of
example e, a candidate passage is never a negative when (the exclusion rules, before anything else):
- ``same_id``: it belongs to e (in any language: in ``pivot`` mode a negative id is written in every
  language of e, so its own id is excluded everywhere);
- ``same_text``: its text equals a positive of e in any language (a duplicate under another id, or
  an untranslated passage); in ``pivot`` mode the negative's text in every language of e is checked;
- ``missing_language`` (``pivot`` only): the candidate example lacks one of e's languages, so it
  could not be the same negative in every language of e.

Modes:
- ``pivot``: each example is mined once, in the pivot language (``pivot``, e.g. ``en``), and every
  language of the example gets the same negative example ids, each in its own language: a triplet
  means the same thing in every language, which X-Y batches need. An example without a pivot row
  is mined in the first of its languages in the order (pivot, then languages by number of rows, most
  first); the record counts the examples mined in each language.
- ``per_language``: each language mined in its own pool with its own queries.

Selection, with sentence-transformers' ``mine_hard_negatives`` names and semantics (its docs, and
NV-Retriever, arXiv 2407.15831, for the positive-aware margins). Candidates come in the order of
their score. The ranks are counted over the candidates the exclusion rules let through (as
sentence-transformers counts them after taking the positives out), down to ``range_max`` (null:
range_min + num_negatives, or range_min + 10 * num_negatives when a margin is set: its rule); the
exact search (``mdr.evaluation.search``) is repeated deeper for the queries whose first candidates
were too often excluded, to at most max(2048, 4 * range_max) candidates. Within those ranks,
``absolute_margin`` drops candidates with score + margin > positive score and ``relative_margin``
those with score > positive score - |positive score| * margin (0.05: NV-Retriever's TopK-PercPos
95 %); a dropped candidate keeps its rank, so a query whose positive scores below most of its
nearest candidates gets fewer negatives, as in sentence-transformers. A text several examples share
is offered once per query (``duplicate``: its best-ranked copy; in ``pivot`` mode, the text in the
mining language). Of the survivors, ``range_min`` skips the first; ``sampling_strategy`` takes the
``top`` ``num_negatives`` of the rest or a ``random`` subset of them (seeded). ``method=random``
draws negatives uniformly from the whole pool under the same exclusion rules (no ranks, no margin):
the control arm that tells what the *mining* adds.

Memory stays bounded for 1M+ passages: embeddings are streamed to float32 memmaps on disk block by
block (as ``mdr.evaluation.miracl``), queries are searched in blocks against the passage blocks,
and only per-row integer arrays stay in RAM. Text equality is tested on 64-bit BLAKE2b hashes of
the texts (a collision could only exclude one more candidate).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import datasets
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mdr.errors import ConfigError, DataError, require_number
from mdr.evaluation.benchmark import finite_embeddings
from mdr.evaluation.search import exact_search, resolve_backend
from mdr.formats.parallel import WRITE_FORMATS, ParallelFileWriter, file_format, resolve_files, source_rows
from mdr.formats.results import write_json_atomic

log = logging.getLogger(__name__)

METHODS = ("hard", "random")
MODES = ("pivot", "per_language")
STRATEGIES = ("top", "random")
RECORD_FILE = "mining_record.json"
# why a candidate is not a negative; KEPT survives every rule
KEPT, SAME_ID, SAME_TEXT, MISSING_LANGUAGE, MARGIN, DUPLICATE, NO_CANDIDATE = range(7)
RULES = {SAME_ID: "same_id", SAME_TEXT: "same_text", MISSING_LANGUAGE: "missing_language", MARGIN: "margin",
         DUPLICATE: "duplicate"}
FAISS_GPU_MAX_K = 2048  # faiss on a GPU returns at most this many neighbours per query
MAX_SEARCH_DEPTH = 2048  # ranks searched at most per query (or 4 * range_max, if more)


@dataclass(frozen=True)
class MiningOptions:
    """The ``mining`` config group (``conf/mining/hard.yaml``, ``random.yaml``; defaults and sources there)."""

    method: str = "hard"
    mode: str = "pivot"
    pivot: str = "en"
    num_negatives: int = 3
    range_min: int = 0
    range_max: int | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sampling_strategy: str = "top"
    seed: int = 42
    score: bool = True                 # random: encode, to report the scores of the drawn negatives
    score_every_language: bool = True  # pivot: also encode the languages not searched, for their statistics

    def __post_init__(self) -> None:
        for name, value, allowed in (("method", self.method, METHODS), ("mode", self.mode, MODES),
                                     ("sampling_strategy", self.sampling_strategy, STRATEGIES)):
            if value not in allowed:
                raise ConfigError(f"mining.{name} must be one of {list(allowed)}, got {value!r}")
        require_number("mining.num_negatives", self.num_negatives, low=1, integer=True)
        require_number("mining.range_min", self.range_min, low=0, integer=True)
        require_number("mining.seed", self.seed, integer=True)
        if self.range_max is not None:
            require_number("mining.range_max", self.range_max, low=1, integer=True)
            if self.range_max - self.range_min < self.num_negatives:
                raise ConfigError(f"mining.range_max={self.range_max} leaves {self.range_max - self.range_min} candidates after "
                                  f"mining.range_min={self.range_min}, fewer than mining.num_negatives={self.num_negatives}")
        if self.absolute_margin is not None:
            require_number("mining.absolute_margin", self.absolute_margin)
        if self.relative_margin is not None:
            require_number("mining.relative_margin", self.relative_margin, low=0, high=1)
        if not isinstance(self.pivot, str) or not self.pivot:
            raise ConfigError(f"mining.pivot must be a language code, got {self.pivot!r}")

    @classmethod
    def from_config(cls, options: dict) -> MiningOptions:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown mining option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)

    @property
    def window_end(self) -> int:
        """range_max, or sentence-transformers' default for it."""
        if self.range_max is not None:
            return self.range_max
        margin = self.absolute_margin is not None or self.relative_margin is not None
        return self.range_min + self.num_negatives * (10 if margin else 1)

    @property
    def needs_encoder(self) -> bool:
        return self.method == "hard" or self.score

    def record(self) -> dict:
        """What defines the negatives (random negatives have no window, margin or strategy)."""
        out = asdict(self)
        if self.method == "random":
            for name in ("range_min", "range_max", "absolute_margin", "relative_margin", "sampling_strategy"):
                out.pop(name)
        else:
            out["range_max"] = self.window_end
            out.pop("score")
        if self.mode != "pivot":
            out.pop("pivot")
            out.pop("score_every_language")
        return out


# -- the corpus as integer arrays


@dataclass
class CorpusIndex:
    """Rows as integers: example and language codes, text hashes, and which texts several examples share."""

    example: np.ndarray           # [rows] example code (ids in sorted order)
    lang: np.ndarray              # [rows] language code
    example_ids: np.ndarray       # [examples] id strings
    languages: list[str]          # language codes, sorted
    row_of: np.ndarray            # [examples, languages] row of (example, language), -1 if absent
    text_hash: np.ndarray         # [rows] uint64 hash of the positive
    shared_row: np.ndarray        # [rows] its text is a positive of another example too
    shared_example: np.ndarray    # [examples] one of its texts is
    texts_of: dict[int, frozenset] = field(default_factory=dict)  # example -> its text hashes, for shared_example only

    @classmethod
    def build(cls, corpus: datasets.Dataset, block: int = 65536) -> CorpusIndex:
        table = corpus.data.table
        example, example_ids = pd.factorize(table.column("id").to_pandas(), sort=True)
        lang, languages = pd.factorize(table.column("lang").to_pandas(), sort=True)
        row_of = np.full((len(example_ids), len(languages)), -1, dtype=np.int64)
        row_of[example, lang] = np.arange(len(example))
        text_hash = np.empty(len(example), dtype=np.uint64)
        positives = table.column("positive")
        for start in range(0, len(example), block):
            texts = positives.slice(start, block).to_pylist()
            text_hash[start : start + len(texts)] = [_hash(t) for t in texts]
        pairs = pd.DataFrame({"h": text_hash, "e": example}).drop_duplicates()
        shared_hashes = pairs["h"][pairs["h"].duplicated(keep=False)].unique()
        shared_row = np.isin(text_hash, shared_hashes)
        shared_example = np.zeros(len(example_ids), dtype=bool)
        shared_example[example[shared_row]] = True
        texts_of = {}
        if shared_example.any():
            mine = pairs[shared_example[pairs["e"].to_numpy()]]
            texts_of = {int(e): frozenset(h.tolist()) for e, h in mine.groupby("e")["h"]}
        return cls(example.astype(np.int64), lang.astype(np.int64), np.asarray(example_ids, dtype=object), list(languages),
                   row_of, text_hash, shared_row, shared_example, texts_of)

    @property
    def present(self) -> np.ndarray:
        """[examples, languages] bool: the example has a row in the language."""
        return self.row_of >= 0

    def rows_of_language(self, code: int) -> np.ndarray:
        return np.flatnonzero(self.lang == code)

    def shares_text(self, query_example: int, candidate_rows: Sequence[int]) -> bool:
        """A candidate's text (any of ``candidate_rows``) is a positive of ``query_example``."""
        mine = self.texts_of.get(query_example, frozenset())
        return any(int(self.text_hash[r]) in mine for r in candidate_rows if r >= 0)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


# -- the rules


def classify(index: CorpusIndex, mode: str, query_example: np.ndarray, candidate_rows: np.ndarray,
             scores: np.ndarray | None = None, threshold: np.ndarray | None = None) -> np.ndarray:
    """[queries, candidates] codes: KEPT, or the first rule that excludes the candidate (``candidate_rows``
    -1: NO_CANDIDATE). ``threshold``: per query, the highest score a negative may have (the margins)."""
    valid = candidate_rows >= 0
    rows = np.where(valid, candidate_rows, 0)
    cand_example = index.example[rows]
    code = np.full(candidate_rows.shape, KEPT, dtype=np.int8)
    code[cand_example == query_example[:, None]] = SAME_ID
    # a shared text always involves two examples that both have shared_example set: a cheap pre-filter
    maybe = (code == KEPT) & index.shared_example[query_example][:, None]
    maybe &= index.shared_example[cand_example] if mode == "pivot" else index.shared_row[rows]
    for i, j in zip(*np.nonzero(maybe & valid)):
        # pivot: the negative is written in every language of the query's example; check each of those texts
        texts = index.row_of[cand_example[i, j]][index.present[query_example[i]]] if mode == "pivot" else [rows[i, j]]
        if index.shares_text(int(query_example[i]), texts):
            code[i, j] = SAME_TEXT
    if mode == "pivot":
        needed = index.present[query_example][:, None, :]
        lacking = (needed & ~index.present[cand_example]).any(-1)
        code[(code == KEPT) & lacking] = MISSING_LANGUAGE
    if threshold is not None and scores is not None:
        code[(code == KEPT) & (scores > threshold[:, None])] = MARGIN
    code[~valid] = NO_CANDIDATE
    # a text several examples share is offered once per query: its best-ranked copy
    for i in np.unique(np.nonzero((code == KEPT) & index.shared_row[rows])[0]):
        seen = set()
        for j in np.flatnonzero((code[i] == KEPT) & index.shared_row[rows[i]]):
            h = int(index.text_hash[rows[i, j]])
            code[i, j] = DUPLICATE if h in seen else KEPT
            seen.add(h)
    return code


def margin_threshold(positive: np.ndarray, options: MiningOptions) -> np.ndarray | None:
    """Per query, the highest score a negative may have: sentence-transformers' absolute_margin
    (score + margin > positive is dropped) and relative_margin (score > positive - |positive| * margin)."""
    limits = []
    if options.absolute_margin is not None:
        limits.append(positive - options.absolute_margin)
    if options.relative_margin is not None:
        limits.append(positive - np.abs(positive) * options.relative_margin)
    return np.minimum.reduce(limits) if limits else None


@dataclass
class RuleCounts:
    """Candidates looked at (down to the last one the window needed) and why each was excluded."""

    scanned: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {name: 0 for name in RULES.values()})
    depth_limited: int = 0  # queries whose search stopped at MAX_SEARCH_DEPTH before range_max ranks

    def add(self, codes: np.ndarray, depth_limited: bool = False) -> None:
        self.scanned += int((codes != NO_CANDIDATE).sum())
        self.depth_limited += int(depth_limited)
        for code, name in RULES.items():
            self.dropped[name] += int((codes == code).sum())

    def merge(self, other: RuleCounts) -> None:
        self.scanned += other.scanned
        self.depth_limited += other.depth_limited
        for name in RULES.values():
            self.dropped[name] += other.dropped[name]

    def as_dict(self) -> dict:
        share = {name: (n / self.scanned if self.scanned else None) for name, n in self.dropped.items()}
        return {"candidates": self.scanned, "dropped": dict(self.dropped), "dropped_share": share,
                "queries_depth_limited": self.depth_limited}


# -- embeddings on disk


class EmbeddingStore:
    """Query and passage embeddings of each language, streamed block by block into float32 memmaps."""

    def __init__(self, corpus: datasets.Dataset, index: CorpusIndex, encoder, folder: str, batch_size: int, block_size: int,
                 progress: bool) -> None:
        self.corpus, self.index, self.encoder, self.folder = corpus, index, encoder, folder
        self.batch_size, self.block_size, self.progress = batch_size, block_size, progress
        self.position = np.empty(len(index.example), dtype=np.int64)  # a row's position among its language's rows
        for code in range(len(index.languages)):
            rows = index.rows_of_language(code)
            self.position[rows] = np.arange(len(rows))
        self._arrays: dict[tuple[int, str], np.ndarray] = {}

    def get(self, lang: int, kind: str) -> np.ndarray:
        """[rows of the language, dim] embeddings of its queries (``query``) or positives (``passage``)."""
        if (lang, kind) not in self._arrays:
            self._arrays[(lang, kind)] = self._encode(lang, kind)
        return self._arrays[(lang, kind)]

    def _encode(self, lang: int, kind: str) -> np.ndarray:
        rows = self.index.rows_of_language(lang)
        column = "query" if kind == "query" else "positive"
        name = self.index.languages[lang]
        path = os.path.join(self.folder, f"{lang}-{kind}.f32")
        what = "queries" if kind == "query" else "passages"
        bar = tqdm(total=len(rows), desc=f"encode {name} {what}", unit="text", disable=not self.progress)
        with open(path, "wb") as out, bar:
            for start in range(0, len(rows), self.block_size):
                texts = self.corpus.data.table.column(column).take(rows[start : start + self.block_size]).to_pylist()
                emb = finite_embeddings(self.encoder.encode(texts, kind, self.batch_size), "mining", f"{name} {kind}s")
                out.write(emb.numpy().astype(np.float32).tobytes())
                bar.update(len(texts))
        dim = os.path.getsize(path) // 4 // max(len(rows), 1)
        return np.memmap(path, dtype=np.float32, mode="r", shape=(len(rows), dim))

    def blocks(self, lang: int) -> Iterator[np.ndarray]:
        passages = self.get(lang, "passage")
        return (np.ascontiguousarray(passages[i : i + self.block_size]) for i in range(0, len(passages), self.block_size))

    def pair_scores(self, query_rows: np.ndarray, passage_rows: np.ndarray) -> np.ndarray:
        """q . p for pairs of rows in one language (``passage_rows`` -1: NaN)."""
        out = np.full(passage_rows.shape, np.nan, dtype=np.float64)
        if not len(query_rows):
            return out
        lang = int(self.index.lang[query_rows[0]])
        q = np.asarray(self.get(lang, "query")[self.position[query_rows]])
        ok = passage_rows >= 0
        p = np.asarray(self.get(lang, "passage")[self.position[np.where(ok, passage_rows, query_rows[:, None])].ravel()])
        out[ok] = np.einsum("qd,qkd->qk", q, p.reshape(*passage_rows.shape, -1))[ok]
        return out


# -- mining


@dataclass
class MinedNegatives:
    """``negatives[row]``: corpus rows of the row's negatives (its language), -1 padded; the statistics."""

    negatives: np.ndarray
    index: CorpusIndex
    statistics: dict
    mined_in: dict[str, int]       # examples (pivot) or rows (per_language) searched in each language


def mine_negatives(corpus: datasets.Dataset, encoder, options: MiningOptions, work_dir: str | None = None,
                   batch_size: int = 128, block_size: int = 65536, search: str = "auto", progress: bool = True) -> MinedNegatives:
    """Negatives for every row of ``corpus`` (see the module docstring)."""
    if options.needs_encoder and encoder is None:
        raise ConfigError("mining needs an encoder: give model=<option> or ckpt=PATH (only mining=random with "
                          "mining.score=false needs none)")
    resolve_backend(search)  # a bad value fails before any encoding
    logging.getLogger("faiss.contrib.exhaustive_search").setLevel(logging.WARNING)  # a timing line per search call
    # A select / shuffle / filter view maps its rows onto the table; the code below reads the table, so it gets the
    # rows as the caller sees them (the Arrow format is datasets' public view of them; zero-copy for a plain table).
    corpus = datasets.Dataset(datasets.table.InMemoryTable(corpus.with_format("arrow")[:]))
    index = CorpusIndex.build(corpus)
    languages = index.languages
    if options.mode == "pivot" and options.pivot not in languages:
        raise ConfigError(f"mining.pivot={options.pivot!r} is not a language of the corpus (its languages: {languages})")
    rng = np.random.default_rng(options.seed)
    n_rows, n = len(index.example), options.num_negatives
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="mdr-mining-") as folder:
        store = EmbeddingStore(corpus, index, encoder, folder, batch_size, block_size, progress)
        chosen = np.full((n_rows, n), -1, dtype=np.int64)  # for each searched row, the chosen rows of its pool
        counts = {code: RuleCounts() for code in range(len(languages))}
        searched = _searched_rows(index, options)
        for code, rows in searched.items():
            if not len(rows):
                continue
            pick = _mine_hard if options.method == "hard" else _draw_random
            chosen[rows] = pick(index, store, options, code, rows, counts[code], rng, search, progress)
        negatives = _negatives_per_row(index, options, searched, chosen)
        every = options.mode == "per_language" or options.score_every_language
        scored = [c for c in range(len(languages)) if options.needs_encoder and (every or len(searched[c]))]
        statistics = _statistics(index, store, negatives, counts, n, scored)
    mined_in = {languages[c]: len(r) for c, r in searched.items() if len(r)}
    return MinedNegatives(negatives, index, statistics, mined_in)


def _searched_rows(index: CorpusIndex, options: MiningOptions) -> dict[int, np.ndarray]:
    """The rows whose queries are searched, per language: every row (per_language), or one row per
    example, in the first of its languages in the pivot order (pivot)."""
    if options.mode == "per_language":
        return {code: index.rows_of_language(code) for code in range(len(index.languages))}
    sizes = index.present.sum(0)
    pivot = index.languages.index(options.pivot)
    others = (c for c in range(len(index.languages)) if c != pivot)
    order = [pivot] + sorted(others, key=lambda c: (-sizes[c], index.languages[c]))
    present = index.present[:, order]
    first = np.asarray(order)[present.argmax(1)]  # every example has at least one language
    return {code: np.sort(index.row_of[first == code, code]) for code in order}


def _mine_hard(index, store, options, lang, rows, counts, rng, search, progress) -> np.ndarray:
    """The chosen candidates (corpus rows) for the queries of ``rows``, searched in ``lang``'s pool."""
    pool = index.rows_of_language(lang)
    queries, passages = store.get(lang, "query"), store.get(lang, "passage")
    end, n = options.window_end, options.num_negatives
    out = np.full((len(rows), n), -1, dtype=np.int64)
    # the search goes deeper only for excluded candidates, and no deeper than this (memory: queries x depth)
    limit = min(len(pool), max(MAX_SEARCH_DEPTH, 4 * end))
    name, device = resolve_backend(search)
    faiss_on_gpu = name == "faiss" and device != "cpu"
    with tqdm(total=len(rows), desc=f"search {index.languages[lang]}", unit="query", disable=not progress) as bar:
        for start in range(0, len(rows), store.block_size):
            block = rows[start : start + store.block_size]
            q = np.asarray(queries[store.position[block]])
            positive = np.einsum("qd,qd->q", q.astype(np.float64), np.asarray(passages[store.position[block]], dtype=np.float64))
            threshold = margin_threshold(positive, options)
            pending, k = np.arange(len(block)), min(limit, end + 16)
            while len(pending):
                backend = "torch" if k > FAISS_GPU_MAX_K and faiss_on_gpu else search
                scores, idx = exact_search(q[pending], store.blocks(lang), k, backend)
                cand = np.where(idx >= 0, pool[np.maximum(idx, 0)], -1)
                codes = classify(index, options.mode, index.example[block[pending]], cand, scores,
                                 None if threshold is None else threshold[pending])
                # ranks are counted over the candidates the exclusion rules let through; one above the
                # margin takes its rank and is dropped (sentence-transformers' range_max)
                ranked = (codes == KEPT) | (codes == MARGIN)
                enough = ranked.sum(1) >= end
                done = enough | (k >= limit)
                for i in np.flatnonzero(done):
                    last = np.flatnonzero(ranked[i])[end - 1] if enough[i] else codes.shape[1] - 1  # scanned down to here
                    counts.add(codes[i, : last + 1], depth_limited=not enough[i] and k < len(pool))
                    survivors = np.flatnonzero(codes[i, : last + 1] == KEPT)
                    window = cand[i, survivors[options.range_min :]]
                    out[start + pending[i], : min(n, len(window))] = _sample(window, n, options.sampling_strategy, rng)
                pending, k = pending[~done], min(limit, 2 * k)
            bar.update(len(block))
    return out


def _sample(window: np.ndarray, n: int, strategy: str, rng: np.random.Generator) -> np.ndarray:
    """``top``: the first n of the window; ``random``: n of it, drawn, kept in rank order."""
    if strategy == "top" or len(window) <= n:
        return window[:n]
    return window[np.sort(rng.choice(len(window), size=n, replace=False))]


def _draw_random(index, store, options, lang, rows, counts, rng, search, progress) -> np.ndarray:
    """Uniformly drawn candidates of ``lang``'s pool that pass the exclusion rules, for each row's query."""
    pool = index.rows_of_language(lang)
    n = options.num_negatives
    out = np.full((len(rows), n), -1, dtype=np.int64)
    for i, row in enumerate(tqdm(rows, desc=f"draw {index.languages[lang]}", unit="query", disable=not progress)):
        size = min(len(pool), 4 * n + 8)
        while True:
            cand = pool[rng.choice(len(pool), size=size, replace=False)][None, :]
            codes = classify(index, options.mode, index.example[[row]], cand)[0]
            kept = np.flatnonzero(codes == KEPT)
            if len(kept) >= n or size == len(pool):
                break
            size = min(len(pool), 4 * size)
        last = kept[n - 1] if len(kept) >= n else len(codes) - 1
        counts.add(codes[: last + 1])
        out[i, : min(n, len(kept))] = cand[0, kept[:n]]
    return out


def _negatives_per_row(index: CorpusIndex, options: MiningOptions, searched: dict[int, np.ndarray],
                       chosen: np.ndarray) -> np.ndarray:
    """Every row's negatives in its own language: per_language, the chosen rows themselves; pivot, the
    chosen examples' rows in the row's language (present by the missing_language rule)."""
    if options.mode == "per_language":
        return chosen
    negatives = np.full_like(chosen, -1)
    for rows in searched.values():
        picked = chosen[rows]
        examples = np.where(picked >= 0, index.example[np.maximum(picked, 0)], -1)
        for code in range(len(index.languages)):
            own = index.row_of[index.example[rows], code]
            has = own >= 0
            negatives[own[has]] = np.where(examples[has] >= 0, index.row_of[np.maximum(examples[has], 0), code], -1)
    return negatives


def _statistics(index: CorpusIndex, store: EmbeddingStore, negatives: np.ndarray, counts: dict[int, RuleCounts], n: int,
                scored: list[int]) -> dict:
    """Per language: rows, negatives written, rows with fewer than n, mean positive and negative scores
    (when scored), and the candidates the searches in that language scanned and dropped, by rule."""
    per_language = {}
    for code, name in enumerate(index.languages):
        rows = index.rows_of_language(code)
        found = (negatives[rows] >= 0).sum(1)
        entry = {"rows": len(rows), "negatives": int(found.sum()), "rows_short": int((found < n).sum()),
                 "rows_without": int((found == 0).sum())}
        if code in scored:
            pos_sum = neg_sum = 0.0
            neg_count = 0
            for start in range(0, len(rows), store.block_size):
                part = rows[start : start + store.block_size]
                pos_sum += float(np.nansum(store.pair_scores(part, part[:, None])))
                neg = store.pair_scores(part, negatives[part])
                neg_sum, neg_count = neg_sum + float(np.nansum(neg)), neg_count + int(np.isfinite(neg).sum())
            entry["positive_score"] = pos_sum / len(rows)
            entry["negative_score"] = neg_sum / neg_count if neg_count else None
        if counts[code].scanned:
            entry["search"] = counts[code].as_dict()
        per_language[name] = entry
    total = RuleCounts()
    for c in counts.values():
        total.merge(c)
    return {"per_language": per_language, "search": total.as_dict(),
            "rows_short": int(sum(e["rows_short"] for e in per_language.values()))}


def statistics_table(statistics: dict) -> str:
    """The statistics as a markdown table, one line per language (dropped: shares of the candidates scanned)."""
    lines = ["| lang | rows | negatives | rows short | positive score | negative score | candidates | "
             + " | ".join(f"dropped: {r.replace('_', ' ')}" for r in RULES.values()) + " |", "|" + "---|" * (7 + len(RULES))]
    fmt = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for name, e in statistics["per_language"].items():
        s = e.get("search", {})
        shares = [pct(s["dropped_share"][r]) if s else "-" for r in RULES.values()]
        lines.append(f"| {name} | {e['rows']} | {e['negatives']} | {e['rows_short']} | {fmt(e.get('positive_score'))} | "
                     f"{fmt(e.get('negative_score'))} | {s.get('candidates', '-')} | " + " | ".join(shares) + " |")
    return "\n".join(lines)


# -- files


def output_paths(files: Sequence[str], out: str, fmt: str | None, overwrite: bool) -> list[tuple[str, str, str]]:
    """(input file, output file, format) for every input: the same name in ``out``; ``fmt`` null keeps
    JSONL and Parquet as they are and writes TSV as JSONL."""
    if fmt is not None and fmt not in WRITE_FORMATS:
        raise ConfigError(f"format must be one of {sorted(WRITE_FORMATS)} or null (as the input), got {fmt!r}")
    plan, names, out = [], {}, os.path.abspath(out)
    for path in resolve_files(files):
        kind = fmt or ("parquet" if file_format(path) == "parquet" else "jsonl")
        target = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + WRITE_FORMATS[kind])
        if target in names:
            raise ConfigError(f"{path} and {names[target]} would both be written to {target}; mine them separately")
        if os.path.exists(target) and os.path.samefile(target, path):
            raise ConfigError(f"out={out} would overwrite the input {path}; choose another folder")
        if os.path.exists(target) and not overwrite:
            raise ConfigError(f"{target} exists; choose another out= or pass overwrite=true")
        names[target] = path
        plan.append((path, target, kind))
    return plan


def write_mined_files(corpus: datasets.Dataset, mined: MinedNegatives, plan: list[tuple[str, str, str]],
                      languages: Sequence[str] | None, block: int = 8192) -> dict:
    """Write every input file's rows again (all their fields, in order) with ``negatives`` and
    ``negative_ids`` set; rows of languages not in ``languages`` (data.languages) are not written.
    Returns {output file: rows written} and the fields a Parquet output could not keep."""
    keep = set(languages) if languages else None
    if keep:
        log.info("data.languages=%s: the rows of other languages are not written", sorted(keep))
    ids, negs = mined.index.example_ids, mined.negatives
    written, dropped, row, first = {}, {}, 0, 0
    for source, target, kind in plan:
        schema = None
        if kind == "parquet" and file_format(source) == "parquet":
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(source).schema_arrow
            schema = schema.remove(schema.get_field_index("negatives")) if "negatives" in schema.names else schema
        writer = ParallelFileWriter(target, kind, list_fields=("negative_ids",), arrow_schema=schema)
        try:
            pending: list[dict] = []
            for raw in source_rows(source):
                if keep is not None and str(raw.get("lang")) not in keep:
                    continue
                pending.append(raw)
                if len(pending) == block:
                    row = _write_block(writer, corpus, ids, negs, mined.index, pending, row, source)
                    pending = []
            row = _write_block(writer, corpus, ids, negs, mined.index, pending, row, source)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        written[target], first = row - first, row
        dropped[target] = sorted(writer.dropped_fields)
    if row != len(corpus):
        raise DataError(f"wrote {row} rows but the corpus has {len(corpus)}: the input files changed while mining")
    return {"rows": written, "dropped_fields": {k: v for k, v in dropped.items() if v}}


def _write_block(writer, corpus, ids, negs, index, raws, row, source) -> int:
    if not raws:
        return row
    rows = np.arange(row, row + len(raws))
    if rows[-1] >= len(corpus):
        raise DataError(f"{source}: more rows than when it was read; the input files changed while mining")
    table = corpus.data.table
    base = table.select(["id", "lang", "query", "positive"]).slice(row, len(raws)).to_pydict()
    wanted = sorted({int(r) for r in negs[rows].ravel() if r >= 0})
    texts = dict(zip(wanted, table.column("positive").take(wanted).to_pylist())) if wanted else {}
    for i, raw in enumerate(raws):
        if str(raw.get("id")) != base["id"][i] or raw.get("lang") != base["lang"][i]:
            raise DataError(f"{source}: row ({raw.get('id')!r}, {raw.get('lang')!r}) is not the one read before "
                            f"({base['id'][i]!r}, {base['lang'][i]!r}); the input files changed while mining")
        picked = [int(r) for r in negs[row + i] if r >= 0]
        writer.write({**raw, "id": base["id"][i], "lang": base["lang"][i], "query": base["query"][i],
                      "positive": base["positive"][i], "negatives": [texts[r] for r in picked],
                      "negative_ids": [str(ids[index.example[r]]) for r in picked]})
    return row + len(raws)


def mine_corpus(files, out: str, options: MiningOptions, encoder=None, model: dict | None = None,
                languages: Sequence[str] | None = None, cache_dir: str | None = None, fmt: str | None = None,
                overwrite: bool = False, batch_size: int = 128, block_size: int = 65536, search: str = "auto",
                work_dir: str | None = None, progress: bool = True, command: Sequence[str] = ()) -> dict:
    """Load ``files``, mine, write the files and ``mining_record.json`` into ``out``; returns the record."""
    from mdr.formats.parallel import load_parallel_corpus

    require_number("block_size", block_size, low=1, integer=True)
    require_number("batch_size", batch_size, low=1, integer=True)
    plan = output_paths(files, out, fmt, overwrite)  # every path problem before any encoding
    record_path = os.path.join(os.path.abspath(out), RECORD_FILE)
    if os.path.exists(record_path) and not overwrite:
        raise ConfigError(f"{record_path} exists; choose another out= or pass overwrite=true")
    corpus = load_parallel_corpus(files, languages, cache_dir=cache_dir)
    replaced = sum(1 for n in corpus.data.table.column("negatives").combine_chunks().value_lengths().to_pylist() if n)
    if replaced:
        log.warning("%d row(s) already have negatives; the mined ones replace them in the files written", replaced)
    mined = mine_negatives(corpus, encoder, options, work_dir=work_dir, batch_size=batch_size, block_size=block_size,
                           search=search, progress=progress)
    files_written = write_mined_files(corpus, mined, plan, languages)
    index = mined.index
    record = {
        "negatives": f"{options.method} ({options.mode})",
        "model": model,
        "options": options.record(),
        "search": dict(zip(("backend", "device"), resolve_backend(search))) if options.method == "hard" else None,
        "input_files": [p for p, _, _ in plan],
        "output_files": files_written["rows"],
        "dropped_fields": files_written["dropped_fields"],
        "data_languages": list(languages) if languages else None,
        "counts": {"rows": len(corpus), "examples": len(index.example_ids), "languages": index.languages,
                   "rows_with_previous_negatives_replaced": replaced, "searched_per_language": mined.mined_in,
                   "negatives_written": int((mined.negatives >= 0).sum()), "rows_short": mined.statistics["rows_short"]},
        "statistics": mined.statistics,
        "command": list(command),
    }
    write_json_atomic(record_path, record)
    if mined.statistics["rows_short"]:
        log.warning("%d row(s) got fewer than %d negatives (rows without any: %d); widen mining.range_max or relax the "
                    "margins, or train with data.num_hard_negatives below what they have (rows_short in %s)",
                    mined.statistics["rows_short"], options.num_negatives,
                    sum(e["rows_without"] for e in mined.statistics["per_language"].values()), record_path)
    for target, fields in files_written["dropped_fields"].items():
        log.warning("%s: field(s) %s are not kept in Parquet output (format=jsonl keeps them)", target, fields)
    return record
