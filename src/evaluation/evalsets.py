"""Evaluation sets: multilingual queries, a multilingual candidate pool, and relevance.

``EvalSet`` is the one shape every benchmark is turned into:

    queries      text, language and question id of each query (a question id is shared by the
                 translations of one question)
    candidates   text and language of each pool entry
    relevant[i]  pool indices relevant to query i, in every language (the evaluator restricts
                 them to the pool of each setting)

Loaders here: ``parallel_eval`` (the long-format parallel schema, e.g. the demo's held-out part)
and ``lareqa`` (XQuAD-R / MLQA-R JSON: one SQuAD-format file per language whose paragraphs carry
``sentences`` and ``sentence_breaks``).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.data.corpus import load_parallel_corpus
from src.errors import DataError


@dataclass
class EvalSet:
    name: str
    query_text: list[str]
    query_lang: list[str]
    query_id: list[str]
    cand_text: list[str]
    cand_lang: list[str]
    relevant: list[np.ndarray]
    languages: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if not self.cand_text:
            raise DataError(f"eval set {self.name!r}: the candidate pool is empty")
        if not self.query_text:
            raise DataError(f"eval set {self.name!r}: no queries")
        self.languages = sorted(set(self.query_lang) | set(self.cand_lang))


def _relevance_by_id(query_id: list[str], cand_ids: list[list[str]]) -> list[np.ndarray]:
    """Candidates answering each question id (a candidate may answer several questions)."""
    by_id: dict[str, list[int]] = defaultdict(list)
    for c, ids in enumerate(cand_ids):
        for qid in ids:
            by_id[qid].append(c)
    return [np.asarray(by_id.get(qid, []), dtype=np.int64) for qid in query_id]


def parallel_eval(name: str, files: str | Sequence[str], languages: Sequence[str] | None = None) -> EvalSet:
    """Held-out parallel data: every row's positive is a candidate; relevant = same id, any language."""
    table = load_parallel_corpus(files, languages).select_columns(["id", "lang", "query", "positive"]).to_dict()
    return EvalSet(
        name=name,
        query_text=table["query"],
        query_lang=table["lang"],
        query_id=table["id"],
        cand_text=table["positive"],
        cand_lang=table["lang"],
        relevant=_relevance_by_id(table["id"], [[i] for i in table["id"]]),
    )


# XQuAD-R beside the checkout, as conf/eval/xquad_r.yaml expects it by default (benchmarks, tests)
DEFAULT_XQUAD_R = Path(__file__).resolve().parents[3] / "shared" / "data" / "xquad-r"

LAREQA_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")


def lareqa(
    name: str,
    path: str,
    languages: Sequence[str] | None = None,
    candidate: str = "sentence",
) -> EvalSet:
    """XQuAD-R / MLQA-R in the LAReQA layout: ``{path}/{lang}.json`` for each language.

    Candidates are the sentences of every paragraph; the relevant candidate of a question is, in
    each language having its id, the sentence that contains its answer start.
    ``candidate="sentence_context"`` appends the paragraph to each sentence as context.
    """
    if not os.path.isdir(path):
        raise DataError(f"eval set {name!r}: directory not found: {path}")
    if languages is None:
        languages = sorted(f[:-5] for f in os.listdir(path) if f.endswith(".json"))
        if not languages:
            raise DataError(f"eval set {name!r}: no <lang>.json files in {path}")
    files = {lang: os.path.join(path, f"{lang}.json") for lang in languages}
    for file in files.values():
        if not os.path.isfile(file):
            raise DataError(f"eval set {name!r}: missing language file {file}")
    return _lareqa_evalset(name, {lang: _lareqa_paragraphs(file) for lang, file in files.items()}, candidate)


def xquad_r_from_hub(
    name: str,
    repo: str = "google-research-datasets/xquad_r",
    languages: Sequence[str] = LAREQA_LANGUAGES,
    split: str = "validation",
    candidate: str = "sentence",
) -> EvalSet:
    """XQuAD-R from the Hugging Face Hub (or a local folder of ``{lang}/*.parquet`` in its layout).

    The hub copy is in SQuAD form (id, context, question, answers) without LAReQA's sentence
    segmentation, so paragraphs are split with ``split_sentences``; the relevant candidate is again
    the sentence holding the answer start. The LAReQA JSON (``eval=xquad_r``) is the reference for
    numbers comparable with papers; the README gives the agreement of the two candidate sets.
    """
    import datasets

    paragraphs = {}
    for lang in languages:
        try:
            if os.path.isdir(repo):
                rows = datasets.load_dataset("parquet", data_files=os.path.join(repo, lang, "*.parquet"), split="train")
            else:
                rows = datasets.load_dataset(repo, lang, split=split)
        except Exception as e:
            raise DataError(
                f"eval set {name!r}: could not load {lang!r} of {repo} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                "without network use eval=xquad_r eval.path=DIR with the LAReQA JSON files"
            ) from None
        paragraphs[lang] = _paragraphs_from_squad_rows(rows, f"{repo}[{lang}]")
    return _lareqa_evalset(name, paragraphs, candidate)


# sentence-final punctuation of the LAReQA languages: Latin/Greek/Cyrillic/Arabic/Devanagari/CJK
_SENTENCE_END = re.compile(r"(?<=[.!?\u037e؟।॥])\s+|(?<=[。！？])\s*")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``: a break after sentence-final punctuation
    (followed by white space, or directly after CJK full stops). Thai has no such punctuation, so
    a Thai paragraph stays one candidate."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text.rstrip()):
        spans.append((start, len(text.rstrip())))
    return spans


def _paragraphs_from_squad_rows(rows, where: str):
    by_context: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_context[row["context"]].append(row)
    for p, (context, qas) in enumerate(by_context.items()):
        spans = split_sentences(context)
        para = {
            "context": context,
            "sentences": [context[b:e] for b, e in spans],
            "sentence_breaks": [list(span) for span in spans],
            "qas": [{"id": r["id"], "question": r["question"],
                     "answers": [{"answer_start": int(r["answers"]["answer_start"][0]), "text": r["answers"]["text"][0]}]}
                    for r in qas],
        }
        yield para, f"{where} paragraph {p}"


def _lareqa_evalset(name: str, paragraphs_by_lang: dict, candidate: str) -> EvalSet:
    if candidate not in ("sentence", "sentence_context"):
        raise DataError(f"eval candidate must be 'sentence' or 'sentence_context', got {candidate!r}")
    q_text, q_lang, q_id, c_text, c_lang, c_ids = [], [], [], [], [], []
    for lang, paragraphs in paragraphs_by_lang.items():
        for para, where in paragraphs:
            breaks = para["sentence_breaks"]
            sentences = para["sentences"]
            if len(breaks) != len(sentences):
                raise DataError(f"{where}: {len(sentences)} 'sentences' but {len(breaks)} 'sentence_breaks'")
            first = len(c_text)
            for s in sentences:
                c_text.append(f"{s} {para['context']}" if candidate == "sentence_context" else s)
                c_lang.append(lang)
                c_ids.append([])
            for qa in _field(para, "qas", where):
                qid = _field(qa, "id", where)
                start = _field(_field(qa, "answers", where)[0], "answer_start", where)
                hit = [i for i, (b, e) in enumerate(breaks) if b <= start < e]
                if not hit:
                    raise DataError(
                        f"{where}: answer_start {start} of question {qid!r} is outside every sentence span {breaks}"
                    )
                c_ids[first + hit[0]].append(qid)
                q_text.append(_field(qa, "question", where))
                q_lang.append(lang)
                q_id.append(qid)
    return EvalSet(name, q_text, q_lang, q_id, c_text, c_lang, _relevance_by_id(q_id, c_ids))


def _field(obj: dict, key: str, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: not in the LAReQA layout: missing field '{key}'")
    return obj[key]


def _lareqa_paragraphs(file: str):
    try:
        with open(file, encoding="utf-8") as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as e:
        raise DataError(f"{file}: not valid JSON ({e.msg} at line {e.lineno})") from None
    for a, article in enumerate(_field(doc, "data", file)):
        for p, para in enumerate(_field(article, "paragraphs", f"{file} data[{a}]")):
            where = f"{file} data[{a}].paragraphs[{p}]"
            for key in ("context", "sentences", "sentence_breaks", "qas"):
                _field(para, key, where)
            yield para, where
