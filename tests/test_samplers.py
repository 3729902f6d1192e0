"""Sampler invariants and statistics (definitions: the docstrings of mdr/data/samplers.py and batch_sampler.py)."""

from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np
import pytest
from scipy.stats import binomtest, chisquare

from mdr.data.datamodule import ParallelDataModule
from mdr.data.index import ParallelIndex
from mdr.data.samplers import HybridSampler, MixedSampler, XXSampler, XYSampler
from mdr.errors import ConfigError, DataError
from tests.helpers import make_rows, tiny, write_jsonl


def make_index(coverage: dict[str, float], n: int = 400, seed: int = 0) -> ParallelIndex:
    """An index where language L holds each of n examples with probability coverage[L]."""
    rng = np.random.default_rng(seed)
    langs = sorted(coverage)
    available = np.stack([rng.random(n) < coverage[lang] for lang in langs], 1)
    available[~available.any(1), 0] = True  # every example exists in some language
    rows = np.full(available.shape, -1)
    rows[available] = np.arange(available.sum())
    chars = [np.where(available, (rng.lognormal(mean, 0.6, available.shape) * 100).astype(np.int32), 0) for mean in (3, 5)]
    return ParallelIndex(langs, np.array([f"e{i}" for i in range(n)]), rows, query_chars=chars[0], passage_chars=chars[1])


COVERAGE = {"ar": 0.3, "de": 0.9, "en": 1.0, "zh": 0.6}
SAMPLERS = {
    "xx": lambda idx, **kw: XXSampler(idx, 8, **kw),
    "xy": lambda idx, **kw: XYSampler(idx, 8, **kw),  # a pair per example (the default)
    "xy_per_batch": lambda idx, **kw: XYSampler(idx, 8, xy_pairs="per_batch", **kw),
    "hybrid": lambda idx, **kw: HybridSampler(idx, 8, alpha=0.5, **kw),
    "hybrid_per_batch": lambda idx, **kw: HybridSampler(idx, 8, alpha=0.5, xy_pairs="per_batch", **kw),
    "mixed": lambda idx, **kw: MixedSampler(idx, 8, **kw),
    "en_en": lambda idx, **kw: XXSampler(idx, 8, languages=["en"], **kw),
}


def row_to_example_lang(index: ParallelIndex) -> dict[int, tuple[int, int]]:
    e, lang = np.nonzero(index.rows >= 0)
    return {int(index.rows[i, j]): (int(i), int(j)) for i, j in zip(e, lang)}


@pytest.fixture(scope="module")
def index() -> ParallelIndex:
    return make_index(COVERAGE)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("name", SAMPLERS)
def test_batches_are_well_formed(index, name, groups):
    sampler = SAMPLERS[name](index, steps_per_epoch=200, seed=1, length_groups=groups)
    lookup = row_to_example_lang(index)
    for batch in sampler:
        assert len(batch) == 8
        q = [lookup[qr] for qr, _ in batch]
        p = [lookup[pr] for _, pr in batch]
        examples = [e for e, _ in q]
        assert len(set(examples)) == len(examples), "an example id twice in one batch"
        assert [e for e, _ in p] == examples, "query and passage of a pair belong to different examples"
        q_langs = {lang for _, lang in q}
        p_langs = {lang for _, lang in p}
        if name in ("xx", "en_en"):
            assert len(q_langs) == 1 and q_langs == p_langs
        if name == "en_en":
            assert q_langs == {index.languages.index("en")}
        if name == "xy_per_batch":
            assert len(q_langs) == 1 and len(p_langs) == 1 and q_langs != p_langs
        if name == "xy":
            assert all(ql != pl for (_, ql), (_, pl) in zip(q, p))
        if name == "mixed":
            assert all(ql == pl for (_, ql), (_, pl) in zip(q, p))


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_sequence_other_seed_differs(index, name):
    a = list(SAMPLERS[name](index, steps_per_epoch=30, seed=7))
    b = list(SAMPLERS[name](index, steps_per_epoch=30, seed=7))
    c = list(SAMPLERS[name](index, steps_per_epoch=30, seed=8))
    assert a == b
    assert a != c


def test_epochs_differ_and_epoch_length_is_configurable(index):
    s = XXSampler(index, 8, steps_per_epoch=13, seed=0)
    assert len(s) == 13 and len(list(s)) == 13
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    default = XXSampler(index, 8)
    assert len(default) == int((index.rows >= 0).sum()) // 8


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("name", SAMPLERS)
def test_resume_continues_with_the_uninterrupted_batches(index, name, groups):
    make = lambda: SAMPLERS[name](index, steps_per_epoch=20, seed=3, length_groups=groups)  # noqa: E731
    full = make()
    full.set_epoch(2)
    uninterrupted = list(full)

    run = make()
    run.set_epoch(2)
    it = iter(run)
    consumed = [next(it) for _ in range(7)]
    state = run.state_dict(consumed=7)

    resumed = make()  # a fresh process
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # Lightning calls set_epoch with the restored epoch
    assert consumed + list(resumed) == uninterrupted
    # the skip applies to the resumed epoch only; the next epoch is whole again
    resumed.set_epoch(3)
    assert len(list(resumed)) == 20


def test_resume_rejects_a_different_seed(index):
    state = XXSampler(index, 8, seed=1).state_dict(consumed=3)
    with pytest.raises(ConfigError, match="seed"):
        XXSampler(index, 8, seed=2).load_state_dict(state)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("name", SAMPLERS)
def test_ddp_ranks_share_language_and_have_disjoint_examples(index, name, groups):
    world = 2
    ranks = [SAMPLERS[name](index, steps_per_epoch=50, seed=5, rank=r, world_size=world, length_groups=groups)
             for r in range(world)]
    lookup = row_to_example_lang(index)
    for b0, b1 in zip(*ranks):
        q0 = [lookup[q] for q, _ in b0]
        q1 = [lookup[q] for q, _ in b1]
        p0 = [lookup[p] for _, p in b0]
        p1 = [lookup[p] for _, p in b1]
        assert not {e for e, _ in q0} & {e for e, _ in q1}, "ranks drew the same example"
        if name in ("xx", "en_en", "xy_per_batch", "hybrid_per_batch"):  # one language (pair) per batch
            assert {lang for _, lang in q0} == {lang for _, lang in q1}
            assert {lang for _, lang in p0} == {lang for _, lang in p1}


def _spans(batches, part: int, index) -> list[tuple[int, int]]:
    """(min, max) length of the queries (part 0) or passages (part 1) of each batch, sorted."""
    return sorted((int(b.chars(index)[part].min()), int(b.chars(index)[part].max())) for b in batches)


def _disjoint(spans) -> bool:
    return all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("name", ["xx", "xy_per_batch", "hybrid_per_batch"])
@pytest.mark.parametrize("groups", [4, 5])
def test_length_groups_cut_one_draw_into_batches_of_similar_lengths(index, name, groups):
    # G = 4: two strata of two batches by passage length, each cut by query length into its batches;
    # G = 5: strata of isqrt(5) = 2, 2 and 1 batches
    grouped = SAMPLERS[name](index, seed=9, length_groups=groups)
    plain = SAMPLERS[name](index, seed=9)
    assert grouped.groups == groups
    real_share = {"grouped": [], "plain": []}
    for g in range(50):
        block = [grouped.batch_at(0, groups * g + i) for i in range(groups)]
        # one draw: one kind and language (pair), G x B distinct examples
        assert len({(b.kind, int(b.query_langs[0]), int(b.passage_langs[0])) for b in block}) == 1
        examples = np.concatenate([b.examples for b in block])
        assert len(set(examples.tolist())) == groups * 8
        by_passage = sorted(block, key=lambda b: b.chars(index)[1].min())
        strata = [by_passage[:2], by_passage[2:4], by_passage[4:]][: (groups + 1) // 2]
        passage_spans = [_spans(s, 1, index) for s in strata]
        assert _disjoint([(min(lo for lo, _ in sp), max(hi for _, hi in sp)) for sp in passage_spans])
        assert all(_disjoint(_spans(s, 0, index)) for s in strata)
        for key, batches in (("grouped", block), ("plain", [plain.batch_at(0, groups * g + i) for i in range(groups)])):
            for b in batches:
                q, p = b.chars(index)
                real_share[key].append((q.sum() + p.sum()) / (len(q) * (q.max() + p.max())))
    # the share of computed positions that are real text: markedly higher when grouped
    grouped_share, plain_share = np.mean(real_share["grouped"]), np.mean(real_share["plain"])
    assert grouped_share > plain_share + 0.2 * (1 - plain_share), (grouped_share, plain_share)


def test_length_groups_keep_language_frequencies(index):
    s = XXSampler(index, 8, seed=11, length_groups=4)
    first_of_group = [s.batch_at(0, 4 * g) for g in range(4000)]
    drawn = Counter(int(b.query_langs[0]) for b in first_of_group)
    n = index.available.sum(0).astype(float)
    assert chisquare([drawn[i] for i in range(len(n))], n / n.sum() * 4000).pvalue > 1e-3


def test_length_groups_lowered_to_what_the_smallest_language_fills(index, caplog):
    s = XXSampler(index, 8, length_groups=1000)
    assert s.groups == int(index.available[:, index.languages.index("ar")].sum()) // 8
    assert "lowered from 1000" in caplog.text
    assert len(set(s.batch_at(0, 0).examples.tolist())) == 8


def test_length_groups_must_be_positive(index):
    with pytest.raises(ConfigError, match=r"sampler\.length_groups must be >= 1, got 0"):
        XXSampler(index, 8, length_groups=0)


def _draw_kinds(sampler, steps):
    return [sampler.batch_at(0, k) for k in range(steps)]


def test_xx_language_frequencies_follow_n_to_the_t(index):
    for t in (1.0, 0.5, 0.0):
        s = XXSampler(index, 8, seed=11, temperature=t)
        drawn = Counter(int(b.query_langs[0]) for b in _draw_kinds(s, 4000))
        n = index.available.sum(0).astype(float)
        expected = n**t / (n**t).sum() * 4000
        observed = [drawn[i] for i in range(len(n))]
        assert chisquare(observed, expected).pvalue > 1e-3, (t, observed, expected)


def test_xy_pair_frequencies_follow_shared_counts(index):
    s = XYSampler(index, 8, seed=12, xy_pairs="per_batch")
    batches = _draw_kinds(s, 6000)
    drawn = Counter((int(b.query_langs[0]), int(b.passage_langs[0])) for b in batches)
    n = index.pair_counts()
    pairs = [(x, y) for x in range(4) for y in range(4) if x != y]
    expected = np.array([n[x, y] for x, y in pairs], dtype=float)
    expected = expected / expected.sum() * len(batches)
    assert chisquare([drawn[p] for p in pairs], expected).pvalue > 1e-3
    # and the examples of an X-Y batch exist in both languages
    for b in batches[:200]:
        assert index.available[b.examples, b.query_langs[0]].all()
        assert index.available[b.examples, b.passage_langs[0]].all()


def test_per_example_xy_rows_follow_shared_counts_and_mix_languages(index):
    """The paper's X-Y batch: every row its own ordered pair X != Y, drawn with p ∝ n_XY, examples
    distinct across the batch and available in both languages of their row."""
    s = XYSampler(index, 8, seed=21)
    n = index.pair_counts()
    pairs = [(x, y) for x in range(4) for y in range(4) if x != y]
    drawn, mixed_batches = Counter(), 0
    for b in _draw_kinds(s, 3000):
        assert (b.query_langs != b.passage_langs).all() and len(set(b.examples.tolist())) == 8
        assert index.available[b.examples, b.query_langs].all() and index.available[b.examples, b.passage_langs].all()
        drawn.update(zip(b.query_langs.tolist(), b.passage_langs.tolist()))
        mixed_batches += len(set(zip(b.query_langs.tolist(), b.passage_langs.tolist()))) > 1
    expected = np.array([n[x, y] for x, y in pairs], dtype=float)
    expected = expected / expected.sum() * sum(drawn.values())
    assert chisquare([drawn[p] for p in pairs], expected).pvalue > 1e-3
    assert mixed_batches > 2900  # rows of one batch carry different pairs


def test_per_example_xy_uses_every_example_when_pairs_run_out():
    """A batch as large as the examples some pairs have: rows whose pair ran out draw another pair."""
    rows = np.full((12, 3), -1)
    rows[:, 0] = np.arange(12)         # de: all 12 examples
    rows[:4, 1] = np.arange(12, 16)     # en: examples 0-3
    rows[4:, 2] = np.arange(16, 24)     # fr: examples 4-11
    small = ParallelIndex(["de", "en", "fr"], np.array([f"e{i}" for i in range(12)]), rows)
    s = XYSampler(small, 12, seed=4)
    for b in _draw_kinds(s, 50):
        assert sorted(b.examples.tolist()) == list(range(12))
        assert small.available[b.examples, b.query_langs].all() and small.available[b.examples, b.passage_langs].all()
    with pytest.raises(ConfigError, match=r"batch size 13 is larger than the 12 examples available in the X-Y pairs"):
        XYSampler(small, 13)


@pytest.mark.parametrize("name", ["xy", "mixed"])
def test_length_groups_keep_each_batchs_language_pairs_when_they_vary_by_example(index, name):
    """Per-example languages: the regrouped batches hold the same language pairs as the batches of
    the draw (examples are only exchanged within a pair), and all the draw's examples."""
    s = SAMPLERS[name](index, seed=3, length_groups=4)
    for g in range(30):
        rng = np.random.default_rng([3, 0, g, 4])
        drawn = s.draw(rng, 4 * 8)
        as_drawn = sorted(sorted(Counter(zip(drawn.query_langs[i:i + 8].tolist(), drawn.passage_langs[i:i + 8].tolist())).items())
                          for i in range(0, 32, 8))
        block = [s.batch_at(0, 4 * g + i) for i in range(4)]
        regrouped = sorted(sorted(Counter(zip(b.query_langs.tolist(), b.passage_langs.tolist())).items()) for b in block)
        assert regrouped == as_drawn
        assert len(set(np.concatenate([b.examples for b in block]).tolist())) == 32


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_hybrid_xx_share_matches_alpha(index, alpha):
    s = HybridSampler(index, 8, alpha=alpha, seed=13)
    kinds = [b.kind for b in _draw_kinds(s, 3000)]
    n_xx = kinds.count("xx")
    if alpha in (0.0, 1.0):
        assert n_xx == alpha * len(kinds)
    else:
        assert binomtest(n_xx, len(kinds), alpha).pvalue > 1e-3


def test_mixed_languages_uniform_among_available(index):
    s = MixedSampler(index, 8, seed=14)
    counts = np.zeros(len(index.languages))
    expected = np.zeros(len(index.languages))
    avail = index.available.astype(float)
    for b in _draw_kinds(s, 2000):
        np.add.at(counts, b.query_langs, 1)
        expected += (avail[b.examples] / avail[b.examples].sum(1, keepdims=True)).sum(0)
        assert index.available[b.examples, b.query_langs].all()
    assert chisquare(counts, expected).pvalue > 1e-3


def test_monolingual_only_languages_are_left_out_of_xy():
    # "mono" shares no example with any other language: X-Y never draws it, X-X does
    rows = np.full((150, 3), -1)
    rows[:100, 0] = np.arange(100)  # de: examples 0-99
    rows[:100, 1] = np.arange(100, 200)  # en: examples 0-99
    rows[100:, 2] = np.arange(200, 250)  # mono: examples 100-149 only
    mono = ParallelIndex(["de", "en", "mono"], np.array([f"e{i}" for i in range(150)]), rows)
    for xy_pairs in ("per_example", "per_batch"):
        xy = XYSampler(mono, 8, seed=0, xy_pairs=xy_pairs)
        assert all(2 not in b.query_langs and 2 not in b.passage_langs for b in _draw_kinds(xy, 300))
    xx = XXSampler(mono, 8, seed=0)
    assert any(b.query_langs[0] == 2 for b in _draw_kinds(xx, 300))


# -- bad options ------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_unit_interval(index, alpha):
    with pytest.raises(ConfigError, match=r"sampler\.alpha must be in \[0, 1\]"):
        HybridSampler(index, 8, alpha=alpha)


def test_batch_larger_than_a_language_names_it_and_the_count(index):
    n_ar = int(index.available[:, index.languages.index("ar")].sum())
    with pytest.raises(ConfigError, match=rf"batch size {n_ar + 1} .*{n_ar} examples available in language 'ar'"):
        XXSampler(index, n_ar + 1)
    with pytest.raises(ConfigError, match=r"available in both 'ar' and"):
        XYSampler(index, n_ar + 1, xy_pairs="per_batch")
    with pytest.raises(ConfigError, match=r"\(60 x 2 ranks\)"):
        XXSampler(index, 60, world_size=2, languages=["ar"])


def test_requested_language_missing(index):
    with pytest.raises(DataError, match=r"language 'fr' is not in the data"):
        XXSampler(index, 8, languages=["fr"])


@pytest.mark.parametrize("sampler, languages", [(MixedSampler, ["en"]), (HybridSampler, ["de", "en"])])
def test_the_loader_records_the_batch_kind_the_sampler_drew(tmp_path, sampler, languages):
    """A mixed batch that happens to be in one language stays "mixed"; hybrid batches say whether
    they were drawn X-X or X-Y (their languages agree with that)."""
    files = write_jsonl(tmp_path / "c.jsonl", make_rows(24, languages, seed=2))
    dm = ParallelDataModule(str(files), sampler=partial(sampler, steps_per_epoch=20), tokenization=tiny().tokenization,
                            batch_size=4, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    kinds = Counter()
    for batch in dm.train_dataloader():
        kinds[batch["kind"]] += 1
        same = batch["query_lang"] == batch["passage_lang"]
        assert batch["kind"] == ("mixed" if sampler is MixedSampler else "xx" if same else "xy")
    assert sum(kinds.values()) == 20 and (sampler is MixedSampler or set(kinds) == {"xx", "xy"})
