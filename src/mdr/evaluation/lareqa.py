"""XQuAD-R and MLQA-R (LAReQA) as pool benchmarks (``mdr.evaluation.pools.EvalSet``).

In:  ``lareqa``: one SQuAD-format JSON file per language whose paragraphs carry LAReQA's
     ``sentences`` and ``sentence_breaks``; ``xquad_r_from_hub``: the hub copy of XQuAD-R (SQuAD
     rows without sentence segmentation, split by rule).
Out: an ``EvalSet`` whose candidates are the sentences of every paragraph in every language and
     whose relevant candidates of a question are, in each language having its id, the sentence
     that contains the answer start.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Sequence

from mdr.errors import DataError
from mdr.evaluation.pools import EvalSet, relevance_by_id
from mdr.formats.hub import from_hub
from mdr.formats.text import read_text

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
        if os.path.isdir(repo):
            files = os.path.join(repo, lang, "*.parquet")
            try:
                rows = datasets.load_dataset("parquet", data_files=files, split="train")
            except Exception as e:  # noqa: BLE001 - missing or unreadable files, whatever datasets raises
                raise DataError(f"eval set {name!r}: could not read {files} ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]})") from None
        else:
            rows = from_hub(lambda: datasets.load_dataset(repo, lang, split=split), f"{lang!r} of {repo}",
                            "use eval=xquad_r eval.path=DIR with the LAReQA JSON files")
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
    return EvalSet(name, q_text, q_lang, q_id, c_text, c_lang, relevance_by_id(q_id, c_ids))


def _field(obj: dict, key: str, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: not in the LAReQA layout: missing field '{key}'")
    return obj[key]


def _lareqa_paragraphs(file: str):
    try:
        doc = json.loads(read_text(file))
    except json.JSONDecodeError as e:
        raise DataError(f"{file}: not valid JSON ({e.msg} at line {e.lineno})") from None
    for a, article in enumerate(_field(doc, "data", file)):
        for p, para in enumerate(_field(article, "paragraphs", f"{file} data[{a}]")):
            where = f"{file} data[{a}].paragraphs[{p}]"
            for key in ("context", "sentences", "sentence_breaks", "qas"):
                _field(para, key, where)
            yield para, where
