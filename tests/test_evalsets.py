"""Eval sets: the LAReQA layout (XQuAD-R / MLQA-R) and the parallel held-out format."""

import json
from pathlib import Path

import pytest

from mdr.errors import DataError
from mdr.config import xquad_r_path
from mdr.evaluation.lareqa import lareqa
from mdr.evaluation.pools import parallel_eval
from tests.helpers import make_rows, write_jsonl

XQUAD_R = Path(xquad_r_path())  # the real benchmark beside the checkout (tests skip without it)


def lareqa_doc(sentences, qas):
    context = " ".join(sentences)
    breaks, start = [], 0
    for s in sentences:
        breaks.append([start, start + len(s)])
        start += len(s) + 1
    return {"data": [{"paragraphs": [{"context": context, "sentences": sentences, "sentence_breaks": breaks,
                                      "qas": qas}]}], "version": "1.1"}


def qa(qid, question, answer_start):
    return {"id": qid, "question": question, "answers": [{"answer_start": answer_start, "text": "x"}]}


@pytest.fixture
def two_langs(tmp_path):
    en = lareqa_doc(["Paris is in France.", "Berlin is in Germany."], [qa("q1", "Where is Berlin?", 25), qa("q2", "Paris?", 0)])
    de = lareqa_doc(["Paris liegt in Frankreich.", "Berlin liegt in Deutschland."], [qa("q1", "Wo liegt Berlin?", 30)])
    (tmp_path / "en.json").write_text(json.dumps(en))
    (tmp_path / "de.json").write_text(json.dumps(de))
    return tmp_path


def test_lareqa_candidates_and_relevance(two_langs):
    es = lareqa("t", str(two_langs))
    assert es.languages == ["de", "en"]
    assert es.cand_text == ["Paris liegt in Frankreich.", "Berlin liegt in Deutschland.",
                            "Paris is in France.", "Berlin is in Germany."]
    by_query = {(lang, qid): sorted(rel.tolist()) for lang, qid, rel in zip(es.query_lang, es.query_id, es.relevant)}
    # q1 is answered by the Berlin sentence in both languages; q2 exists in English only
    assert by_query == {("de", "q1"): [1, 3], ("en", "q1"): [1, 3], ("en", "q2"): [2]}
    ctx = lareqa("t", str(two_langs), candidate="sentence_context")
    assert ctx.cand_text[0].startswith("Paris liegt in Frankreich. Paris liegt in Frankreich. Berlin")


def test_lareqa_bad_inputs(two_langs, tmp_path):
    with pytest.raises(DataError, match=r"missing language file .*fr\.json"):
        lareqa("t", str(two_langs), languages=["en", "fr"])
    with pytest.raises(DataError, match="directory not found"):
        lareqa("t", str(tmp_path / "nope"))
    doc = json.loads((two_langs / "en.json").read_text())
    del doc["data"][0]["paragraphs"][0]["sentence_breaks"]
    (two_langs / "en.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"en\.json data\[0\]\.paragraphs\[0\]: not in the LAReQA layout: missing field 'sentence_breaks'"):
        lareqa("t", str(two_langs))
    (two_langs / "en.json").write_text(json.dumps(lareqa_doc(["One.", "Two."], [qa("q9", "?", 99)])))
    with pytest.raises(DataError, match=r"answer_start 99 of question 'q9' is outside every sentence span"):
        lareqa("t", str(two_langs))
    (two_langs / "en.json").write_text("{not json")
    with pytest.raises(DataError, match=r"en\.json: not valid JSON"):
        lareqa("t", str(two_langs))
    (two_langs / "en.json").write_text(json.dumps({"data": []}))
    (two_langs / "de.json").write_text(json.dumps({"data": []}))
    with pytest.raises(DataError, match="candidate pool is empty"):
        lareqa("t", str(two_langs))


def test_parallel_eval_relevance_is_the_same_id_in_every_language(tmp_path):
    f = write_jsonl(tmp_path / "e.jsonl", make_rows(5, ["en", "de", "zh"], coverage={"zh": 0.5}, seed=2))
    es = parallel_eval("p", f)
    for qid, rel in zip(es.query_id, es.relevant):
        assert {es.cand_text[c] for c in rel} == {
            t for t, i in zip(es.cand_text, es.query_id) if i == qid
        }


@pytest.mark.skipif(not XQUAD_R.is_dir(), reason=f"XQuAD-R not found at {XQUAD_R}")
def test_real_xquad_r_structure():
    es = lareqa("xquad_r", str(XQUAD_R))
    assert len(es.languages) == 11
    assert len(es.query_text) == 11 * 1190
    assert 11 * 852 <= len(es.cand_text) <= 11 * 1276
    assert all(len(r) == 11 for r in es.relevant)  # 11-way parallel: the answer sentence in every language


def squad_rows_from_lareqa(src: Path, dst: Path, languages) -> Path:
    """The hub's layout of XQuAD-R (SQuAD form, one parquet folder per language) from LAReQA JSON."""
    import pandas as pd

    for lang in languages:
        doc = json.loads((src / f"{lang}.json").read_text(encoding="utf-8"))
        rows = [{"id": q["id"], "context": p["context"], "question": q["question"],
                 "answers": {"text": [a["text"] for a in q["answers"]], "answer_start": [a["answer_start"] for a in q["answers"]]}}
                for article in doc["data"] for p in article["paragraphs"] for q in p["qas"]]
        (dst / lang).mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(dst / lang / "validation-00000-of-00001.parquet")
    return dst


def test_hub_layout_gives_the_same_eval_set_when_sentences_split_cleanly(two_langs, tmp_path):
    from mdr.evaluation.lareqa import xquad_r_from_hub

    hub = xquad_r_from_hub("t", repo=str(squad_rows_from_lareqa(two_langs, tmp_path / "hub", ["de", "en"])), languages=["de", "en"])
    ref = lareqa("t", str(two_langs), languages=["de", "en"])
    assert (hub.query_text, hub.query_id, hub.cand_text, hub.cand_lang) == (ref.query_text, ref.query_id, ref.cand_text, ref.cand_lang)
    assert [r.tolist() for r in hub.relevant] == [r.tolist() for r in ref.relevant]


def test_hub_download_offline_points_at_the_local_layout(monkeypatch):
    import datasets

    from mdr.evaluation.lareqa import xquad_r_from_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match=r"could not get 'en' of google-research-datasets/xquad_r .*eval=xquad_r eval\.path=DIR"):
        xquad_r_from_hub("t", languages=["en"])


@pytest.mark.skipif(not XQUAD_R.is_dir(), reason=f"XQuAD-R not found at {XQUAD_R}")
def test_hub_sentence_split_agrees_with_lareqa_on_real_xquad_r(tmp_path):
    """Same queries; most official candidate sentences reproduced exactly (Thai, which has no
    sentence punctuation, excepted). The README's agreement table comes from this comparison."""
    from mdr.evaluation.lareqa import split_sentences, xquad_r_from_hub

    langs = ["ar", "de", "en", "ru", "zh"]
    hub = xquad_r_from_hub("t", repo=str(squad_rows_from_lareqa(XQUAD_R, tmp_path, langs)), languages=langs)
    ref = lareqa("t", str(XQUAD_R), languages=langs)
    assert hub.query_id == ref.query_id and hub.query_text == ref.query_text
    for lang in langs:
        official = {t.strip() for t, x in zip(ref.cand_text, ref.cand_lang) if x == lang}
        ours = {t.strip() for t, x in zip(hub.cand_text, hub.cand_lang) if x == lang}
        assert len(official & ours) / len(official) > 0.85, lang
    assert split_sentences("One. Two!  三。四") == [(0, 4), (5, 9), (11, 13), (13, 14)]
