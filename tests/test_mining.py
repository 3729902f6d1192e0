"""mine.py / mdr.mining: language-aware negatives, checked against an independent brute-force miner,
over many random corpora with translations and duplicate texts, and through training."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mdr.mining as mining
from mdr.errors import UserError
from mdr.formats.parallel import load_parallel_corpus
from mdr.mining import MiningOptions, mine_negatives
from mdr.tasks import mine, train
from tests.helpers import ROOT, WORDS, compose_config, compose_train, make_rows, run_script, write_jsonl


class BagOfWords:
    """A stand-in encoder, seconds for dozens of corpora: a fixed random projection of the word counts,
    L2-normalised. Translations (the same words with another language tag) score high, so a miner
    without the language rules would pick them."""

    name_or_path = "bag-of-words"

    def __init__(self, dim: int = 48) -> None:
        self.dim = dim

    def _vector(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def encode(self, texts, kind, batch_size=128) -> torch.Tensor:
        out = np.stack([sum(self._vector(w) for w in t.split()) for t in texts]) if texts else np.zeros((0, self.dim))
        return F.normalize(torch.tensor(out, dtype=torch.float32), dim=-1)


def random_corpus(rng: random.Random, languages=("de", "en", "ru", "zh")) -> list[dict]:
    """Translations (shared words), languages missing here and there (English too), and duplicate texts:
    copies under other ids, untranslated passages, and copies across languages and ids."""
    rows, n = [], rng.randint(6, 24)
    for e in range(n):
        words = rng.sample(WORDS, 6)
        present = [lang for lang in languages if rng.random() < 0.85] or [rng.choice(languages)]
        for lang in present:
            rows.append({"id": f"e{e:02d}", "lang": lang, "query": f"[{lang}] " + " ".join(words[:3]) + "?",
                         "positive": f"[{lang}] " + " ".join(words + rng.sample(WORDS, 2)) + "."})
    for _ in range(rng.randint(1, 6)):  # duplicates of every kind
        a, b = rng.sample(rows, 2)
        kind = rng.random()
        if kind < 0.4 and a["lang"] == b["lang"] or kind >= 0.7:
            b["positive"] = a["positive"]            # the same text under another id (any language)
        else:
            same = [r for r in rows if r["id"] == a["id"] and r is not a]
            if same:
                rng.choice(same)["positive"] = a["positive"]  # an untranslated passage of one example
    return rows


def check_negatives(rows: list[dict], mined, options: MiningOptions) -> None:
    """No negative shares the example id or a positive text (in any language) of its row; each is in
    the row's language; pivot: the same negative ids in every language of an example."""
    index = mined.index
    positives = defaultdict(set)
    for r in rows:
        positives[r["id"]].add(r["positive"])
    by_example = defaultdict(dict)
    for i, r in enumerate(rows):
        negs = [int(n) for n in mined.negatives[i] if n >= 0]
        ids = [rows[n]["id"] for n in negs]
        assert r["id"] not in ids, (r, ids)
        assert not {rows[n]["positive"] for n in negs} & positives[r["id"]], (r, [rows[n] for n in negs])
        assert all(rows[n]["lang"] == r["lang"] for n in negs)
        assert len(set(negs)) == len(negs)
        if options.mode == "per_language":  # a text several examples share is offered once
            assert len({rows[n]["positive"] for n in negs}) == len(negs), [rows[n] for n in negs]
        assert str(index.example_ids[index.example[i]]) == r["id"]
        by_example[r["id"]][r["lang"]] = ids
    if options.mode == "pivot":
        for example, per_lang in by_example.items():
            assert len({tuple(v) for v in per_lang.values()}) == 1, (example, per_lang)


OPTION_GRID = [
    MiningOptions(relative_margin=0.05),
    MiningOptions(mode="per_language", num_negatives=2, range_min=1, absolute_margin=0.02, sampling_strategy="random"),
    MiningOptions(method="random", num_negatives=2),
    MiningOptions(method="random", mode="per_language", num_negatives=4),
]


def test_no_negative_shares_the_example_id_or_a_positive_text_in_any_language(tmp_path):
    """The property, over 20 random corpora x 4 option sets; and the rules did real work there."""
    encoder, dropped = BagOfWords(), defaultdict(int)
    for seed in range(20):
        rows = random_corpus(random.Random(seed))
        path = write_jsonl(tmp_path / f"c{seed}.jsonl", rows)
        corpus = load_parallel_corpus(str(path), cache_dir=str(tmp_path / "cache"))
        for options in OPTION_GRID:
            mined = mine_negatives(corpus, encoder, options, block_size=5, search="torch", progress=False)  # faiss: below
            check_negatives(rows, mined, options)
            for rule, n in mined.statistics["search"]["dropped"].items():
                dropped[rule] += n
    assert dropped["same_id"] > 0 and dropped["same_text"] > 0 and dropped["missing_language"] > 0, dict(dropped)


def brute_force(rows: list[dict], encoder, options: MiningOptions, mining_language: str) -> dict[str, list[str]]:
    """The negative ids of every example mined in ``mining_language``, straight from the definitions:
    full score matrix, every rule in plain Python, sort, ranks, window, top."""
    positives, languages = defaultdict(set), defaultdict(set)
    where = {(r["id"], r["lang"]): r for r in rows}
    for r in rows:
        positives[r["id"]].add(r["positive"])
        languages[r["id"]].add(r["lang"])
    pool = [r for r in rows if r["lang"] == mining_language]
    q = encoder.encode([r["query"] for r in pool], "query").double().numpy()
    p = encoder.encode([r["positive"] for r in pool], "passage").double().numpy()
    out = {}
    for i, r in enumerate(pool):
        scores, positive = p @ q[i], float(p[i] @ q[i])
        limits = [positive - options.absolute_margin] if options.absolute_margin is not None else []
        limits += [positive - abs(positive) * options.relative_margin] if options.relative_margin is not None else []
        survivors, seen, rank = [], set(), 0
        for j in np.argsort(-scores, kind="stable"):
            c = pool[j]
            if rank == options.window_end:
                break
            if c["id"] == r["id"]:
                continue
            if options.mode == "pivot":
                if any((c["id"], lang) not in where for lang in languages[r["id"]]):
                    continue
                texts = {where[(c["id"], lang)]["positive"] for lang in languages[r["id"]]}
            else:
                texts = {c["positive"]}
            if texts & positives[r["id"]]:
                continue
            if limits and scores[j] > min(limits):
                rank += 1  # above the margin: it takes its rank and is dropped
                continue
            if c["positive"] in seen:
                continue
            seen.add(c["positive"])
            survivors.append(c["id"])
            rank += 1
        out[r["id"]] = survivors[options.range_min :][: options.num_negatives]
    return out


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("options", [
    MiningOptions(relative_margin=0.05, num_negatives=3),
    MiningOptions(mode="per_language", range_min=2, range_max=9, absolute_margin=0.0, num_negatives=4),
    MiningOptions(absolute_margin=0.35, num_negatives=2, range_max=6),  # drops the best ones
])
def test_the_search_equals_brute_force(tmp_path, monkeypatch, backend, options):
    rng = random.Random(7)
    rows = []
    for e in range(70):  # no duplicate texts: no ties, so the ids must match exactly
        words = rng.sample(WORDS, 7)
        for lang in ("de", "en") if e % 4 == 0 else ("en",):  # pivot: most candidates lack German, the search goes deeper
            rows.append({"id": f"e{e:02d}", "lang": lang, "query": f"[{lang}] " + " ".join(words[:3]) + "?",
                         "positive": f"[{lang}] {e} " + " ".join(words + rng.sample(WORDS, 3))})
    corpus = load_parallel_corpus(str(write_jsonl(tmp_path / "c.jsonl", rows)), cache_dir=str(tmp_path / "cache"))
    calls = []
    search = mining.exact_search
    monkeypatch.setattr(mining, "exact_search", lambda q, blocks, k, b: calls.append(k) or search(q, blocks, k, b))
    mined = mine_negatives(corpus, BagOfWords(), options, block_size=16, search=backend, progress=False)
    got = {}
    for i, r in enumerate(rows):
        if r["lang"] == "en" or options.mode == "per_language":
            got.setdefault(r["lang"], {})[r["id"]] = [rows[n]["id"] for n in mined.negatives[i] if n >= 0]
    for lang, negatives in got.items():
        assert negatives == brute_force(rows, BagOfWords(), options, lang)
    if options.mode == "pivot":
        assert max(calls) > min(calls), "the deeper search was never needed: the test does not test it"


def test_the_search_depth_is_bounded(tmp_path, monkeypatch):
    """A query whose candidates are nearly all excluded stops at the depth limit, counted, not at the pool's end."""
    rows = make_rows(60, ["de", "en"], seed=9)
    rows = [r for r in rows if r["lang"] == "en" or r["id"] in ("ex0000", "ex0001")]  # two examples in German
    corpus = load_parallel_corpus(str(write_jsonl(tmp_path / "c.jsonl", rows)), cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(mining, "MAX_SEARCH_DEPTH", 12)
    mined = mine_negatives(corpus, BagOfWords(), MiningOptions(num_negatives=2, range_max=3), block_size=16, progress=False)
    search = mined.statistics["search"]
    assert search["queries_depth_limited"] == 2  # the two German examples: one candidate has German, the limit is 12
    assert search["candidates"] <= 58 * 12 + 2 * 12 and mined.statistics["per_language"]["en"]["rows_short"] >= 2


def test_deterministic_with_a_seed_and_pivot_fallback_for_examples_without_the_pivot(tmp_path):
    rows = make_rows(40, ["de", "en", "ru"], coverage={"en": 0.6}, seed=3)
    corpus = load_parallel_corpus(str(write_jsonl(tmp_path / "c.jsonl", rows)), cache_dir=str(tmp_path / "cache"))
    for options in (MiningOptions(sampling_strategy="random", range_max=15, num_negatives=3, seed=5),
                    MiningOptions(method="random", num_negatives=3, seed=5)):
        runs = [mine_negatives(corpus, BagOfWords(), options, block_size=8, progress=False) for _ in range(2)]
        reseeded = MiningOptions(**{**options.__dict__, "seed": 6})
        other = mine_negatives(corpus, BagOfWords(), reseeded, block_size=8, progress=False)
        assert np.array_equal(runs[0].negatives, runs[1].negatives)
        assert runs[0].statistics == runs[1].statistics
        assert not np.array_equal(runs[0].negatives, other.negatives)
        check_negatives(rows, runs[0], options)
        without_en = {r["id"] for r in rows} - {r["id"] for r in rows if r["lang"] == "en"}
        assert runs[0].mined_in["en"] + sum(v for k, v in runs[0].mined_in.items() if k != "en") == 40
        assert sum(v for k, v in runs[0].mined_in.items() if k != "en") == len(without_en) > 0
        assert (runs[0].negatives >= 0).all()


def test_a_selected_view_is_mined_as_its_rows_are_seen(tmp_path):
    """A corpus passed as a select() view (its rows reordered and thinned) mines exactly as those rows written out:
    row numbers are the view's, never the underlying table's."""
    rows = make_rows(30, ["de", "en"], seed=4)
    corpus = load_parallel_corpus(str(write_jsonl(tmp_path / "c.jsonl", rows)), cache_dir=str(tmp_path / "cache"))
    keep = [i for i in reversed(range(len(rows))) if rows[i]["id"] != "ex0003"]
    seen = [rows[i] for i in keep]
    alone = load_parallel_corpus(str(write_jsonl(tmp_path / "seen.jsonl", seen)), cache_dir=str(tmp_path / "cache2"))
    options = MiningOptions(num_negatives=2)
    view, written = (mine_negatives(c, BagOfWords(), options, block_size=8, progress=False) for c in (corpus.select(keep), alone))
    assert np.array_equal(view.negatives, written.negatives) and view.statistics == written.statistics
    check_negatives(seen, view, options)


def test_pivot_statistics_of_the_languages_not_searched_are_optional(tmp_path):
    rows = make_rows(20, ["de", "en"], seed=4)
    corpus = load_parallel_corpus(str(write_jsonl(tmp_path / "c.jsonl", rows)), cache_dir=str(tmp_path / "cache"))
    full, lean = (mine_negatives(corpus, BagOfWords(), MiningOptions(score_every_language=every), progress=False)
                  for every in (True, False))
    assert np.array_equal(full.negatives, lean.negatives)
    full_de, lean_de = full.statistics["per_language"]["de"], lean.statistics["per_language"]["de"]
    assert "negative_score" in full_de and "negative_score" not in lean_de and "search" not in full_de
    assert full.statistics["per_language"]["en"] == lean.statistics["per_language"]["en"]
    assert full.statistics["per_language"]["en"]["search"]["candidates"] > 0


def test_tsv_input_to_parquet_keeps_the_chosen_languages_and_says_what_it_drops(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = make_rows(12, ["de", "en", "zh"], seed=2, negatives=2)
    path = tmp_path / "c.tsv"
    header = ["id", "lang", "topic", "query", "positive", "negative_1", "negative_2"]
    lines = ["\t".join(header)] + ["\t".join([*(r[h] for h in header[:5]), *r["negatives"]]) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    record = mine(compose_config("mine", ["data=parallel_files", f"data.files={path}", "data.languages=[en,zh]", "out=out",
                                          "format=parquet", "mining=random", "mining.score=false", "progress=false"]))
    written = load_parallel_corpus("out/c.parquet", cache_dir=str(tmp_path / "cache"))
    assert sorted(set(written["lang"])) == ["en", "zh"] and len(written) == 24
    assert all(len(n) == 3 for n in written["negatives"])
    assert record["dropped_fields"] == {str(tmp_path / "out" / "c.parquet"): ["topic"]}
    assert record["counts"]["rows_with_previous_negatives_replaced"] == 24


def mine_overrides(corpus_file, out, *extra) -> list[str]:
    return ["model=tiny", "data=parallel_files", f"data.files={corpus_file}", f"out={out}", "progress=false", *extra]


def test_mined_files_train_through_parallel_files_with_one_hard_negative(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mined"
    record = mine(compose_config("mine", mine_overrides(corpus["train"], out, "mining.relative_margin=null")))
    written = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    source = [json.loads(line) for line in open(corpus["train"])]
    assert [(r["id"], r["lang"], r["topic"]) for r in written] == [(r["id"], r["lang"], r["topic"]) for r in source]
    assert all(len(r["negatives"]) == 3 and len(r["negative_ids"]) == 3 for r in written)
    on_disk = json.loads((out / "mining_record.json").read_text())
    assert on_disk["options"]["mode"] == "pivot" and on_disk["model"]["name_or_path"] and on_disk["counts"]["rows"] == len(source)
    assert set(on_disk["statistics"]["per_language"]) == {"ar", "de", "en", "zh"} and record["counts"] == on_disk["counts"]
    by_id = defaultdict(set)
    for r in written:
        by_id[r["id"]].add(tuple(r["negative_ids"]))
    assert all(len(v) == 1 for v in by_id.values())  # pivot: the same ids in every language

    results = train(compose_train(["model=tiny", "logger=none", "eval=none", "data=parallel_files",
                                   f"data.files={out / 'train.jsonl'}", "data.num_hard_negatives=1",
                                   f"data.cache_dir={corpus['cache']}", "data.batch_size=8", "data.num_workers=0",
                                   "trainer.max_steps=2", "trainer.enable_progress_bar=false"]))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert results == {} and ckpt.exists()
    # mined again by the trained checkpoint, with the model it stores
    again = mine(compose_config("mine", ["data=parallel_files", f"data.files={corpus['train']}", f"ckpt={ckpt}", "out=again",
                                         "mining.relative_margin=null", "progress=false"]))
    assert again["model"]["ckpt"] == str(ckpt) and again["counts"]["negatives_written"] > 0


def test_a_batch_carries_the_mined_negative_of_each_positive(corpus, tmp_path, monkeypatch):
    from hydra.utils import instantiate

    from mdr.data.loader import fingerprint

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mined"
    mine(compose_config("mine", mine_overrides(corpus["train"], out, "mining.relative_margin=null", "format=parquet")))
    cfg = compose_train(["model=tiny", "data=parallel_files", f"data.files={out / 'train.parquet'}", "data.num_hard_negatives=1",
                         f"data.cache_dir={corpus['cache']}", "data.batch_size=8", "data.num_workers=1", "sampler=xy"])
    dm = instantiate(cfg.data)(sampler=instantiate(cfg.sampler), tokenization=lambda texts, kind: list(texts), seed=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    negatives = {(r["lang"], r["positive"]): r["negatives"][0] for r in dm.corpus}
    assert len(batch["passage"]) == 16
    for lang, positive, negative in zip(batch["passage_lang"], batch["passage"][:8], batch["passage"][8:]):
        assert negatives[(lang, positive)] == negative
    # each passage carries its example id (a negative: its negative_ids entry) and the keys the loss masks with
    ids = {(r["lang"], r["positive"]): (r["id"], r["negative_ids"][0]) for r in dm.corpus}
    for lang, positive, own, negative in zip(batch["passage_lang"], batch["passage"][:8], batch["passage_id"][:8],
                                             batch["passage_id"][8:]):
        assert ids[(lang, positive)] == (own, negative) and own != negative
    want = [[fingerprint(i), fingerprint(t)] for i, t in zip(batch["passage_id"], batch["passage"])]
    assert batch["passage_keys"].tolist() == want


@pytest.mark.parametrize("overrides, message", [
    (["mining.mode=both"], r"mining\.mode must be one of \['pivot', 'per_language'\], got 'both'"),
    (["mining.pivot=fr"], r"mining\.pivot='fr' is not a language of the corpus \(its languages: \['ar', 'de', 'en', 'zh'\]\)"),
    (["mining.range_max=4", "mining.range_min=2"], r"mining\.range_max=4 leaves 2 candidates after mining\.range_min=2, fewer"),
    (["mining.relative_margin=1.5"], r"mining\.relative_margin must be in \[0, 1\], got 1\.5"),
    (["mining.num_negatives=0"], r"mining\.num_negatives must be >= 1, got 0"),
    (["mining.sampling_strategy=hardest"], r"mining\.sampling_strategy must be one of \['top', 'random'\]"),
    (["format=csv"], r"format must be one of \['jsonl', 'parquet'\] or null"),
    (["search=annoy"], r"search must be one of"),
    (["ckpt=/nonexistent.ckpt"], r"checkpoint not found: /nonexistent\.ckpt"),
    (["data.files=/nonexistent/*.jsonl"], r"data file not found: /nonexistent"),
    (["~model"], r"mining needs an encoder: give model=<option> or ckpt=PATH"),
])
def test_bad_options_are_one_error(corpus, tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        mine(compose_config("mine", mine_overrides(corpus["train"], tmp_path / "out", *overrides)))
    assert not (tmp_path / "out" / "mining_record.json").exists()


def test_a_mixture_is_mined_one_corpus_at_a_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"data\.sources: mine each corpus of a mixture on its own"):
        mine(compose_config("mine", ["model=tiny", "data=mixture", "out=out"]))


def test_existing_output_and_the_input_itself_are_never_overwritten(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    mine(compose_config("mine", mine_overrides(corpus["train"], out, "mining=random", "mining.score=false", "~model")))
    before = (out / "train.jsonl").read_bytes()
    with pytest.raises(UserError, match=r"train\.jsonl exists; choose another out= or pass overwrite=true"):
        mine(compose_config("mine", mine_overrides(corpus["train"], out, "mining=random")))
    with pytest.raises(UserError, match=r"would overwrite the input"):
        mine(compose_config("mine", mine_overrides(corpus["train"], corpus["train"].parent, "overwrite=true")))
    assert (out / "train.jsonl").read_bytes() == before
    again = mine(compose_config("mine", mine_overrides(corpus["train"], out, "mining=random", "mining.score=false", "~model",
                                                       "overwrite=true")))
    assert (out / "train.jsonl").read_bytes() == before  # the same seed: the same file
    assert again["model"] is None and "negative_score" not in again["statistics"]["per_language"]["en"]


def test_the_script_prints_one_line_for_a_bad_option_or_path(corpus, tmp_path):
    for args, expected in [
        (["mining.pivot=fr"], "error: mining.pivot='fr' is not a language of the corpus"),
        (["data.files=/nonexistent.jsonl"], "error: data file not found: /nonexistent.jsonl"),
    ]:
        out = run_script([str(ROOT / "mine.py"), *mine_overrides(corpus["train"], tmp_path / "o", *args),
                          f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert expected in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
