"""Encoder: pooling definitions against direct computations, prefixes, lengths, load errors."""

import pytest
import torch
import torch.nn.functional as F

from mdr.config import minilm_path
from mdr.errors import ConfigError
from mdr.model.encoder import Encoder
from tests.helpers import tiny


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_pooling_matches_direct_computation(pooling):
    enc = tiny(pooling=pooling, normalize=False)
    inputs = enc.tokenization(["a short one", "a much longer text with many more tokens in it"], "passage")
    with torch.no_grad():
        out = enc.model(**inputs)
        emb = enc(**inputs)
    if pooling == "cls":
        expected = out.last_hidden_state[:, 0]
    elif pooling == "pooler":
        expected = out.pooler_output
    else:  # mean over real tokens only: padding must not count
        m = inputs["attention_mask"]
        expected = torch.stack([out.last_hidden_state[i, : m[i].sum()].mean(0) for i in range(2)])
    torch.testing.assert_close(emb, expected)


def test_normalised_and_padding_invariant():
    enc = tiny(pooling="mean")
    alone = enc.encode(["short text"], "query")
    padded = enc.encode(["short text", "a far longer neighbour that forces a lot of padding here"], "query")
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.norm(dim=1), torch.ones(2))


def test_prefixes_and_separate_max_lengths():
    enc = tiny(query_prefix="query: ", passage_prefix="passage: ", query_max_length=8, passage_max_length=16)
    long = " ".join(["word"] * 50)
    q = enc.tokenization([long], "query")["input_ids"]
    p = enc.tokenization([long], "passage")["input_ids"]
    assert q.shape[1] == 8 and p.shape[1] == 16
    tok = enc.tokenization.tokenizer
    assert tok.decode(q[0, 1:3]) == "query :"
    assert tok.decode(p[0, 1:3]) == "passage :"
    with torch.no_grad():
        assert not torch.allclose(enc.encode(["same"], "query"), enc.encode(["same"], "passage"))


def test_encode_keeps_input_order():
    enc = tiny()
    texts = ["b " * 20, "a", "c " * 5]
    together = enc.encode(texts, "passage", batch_size=2)
    for i, t in enumerate(texts):
        torch.testing.assert_close(together[i], enc.encode([t], "passage")[0], atol=1e-5, rtol=1e-5)


def test_encode_batches_by_token_count_not_characters(monkeypatch):
    """Token counts include the prefix and truncation; batches group texts of similar token count
    where character counts disagree (a CJK character is a token, a Latin word of 12 letters one)."""
    enc = tiny(passage_prefix="passage: ", passage_max_length=16)
    texts = ["维基百科是一个网络百科全书", "encyclopedia encyclopedia", "a", "维基百科"]
    tok = enc.tokenization.tokenizer
    expected = [min(len(tok("passage: " + t)["input_ids"]), 16) for t in texts]
    assert expected == [16, 6, 5, 8]  # by characters the order would be 2nd, 1st, 4th, 3rd
    assert enc.tokenization.lengths(texts, "passage", block=3).tolist() == expected
    widths = []
    forward = Encoder.forward
    monkeypatch.setattr(Encoder, "forward", lambda self, **kw: widths.append(kw["input_ids"].shape[1]) or forward(self, **kw))
    together = enc.encode(texts, "passage", batch_size=2)
    assert widths == [16, 6]  # {16, 8} then {6, 5}; sorting by characters would pad to 16 and 8
    for i, t in enumerate(texts):
        torch.testing.assert_close(together[i], enc.encode([t], "passage")[0], atol=1e-5, rtol=1e-5)


def test_unknown_pooling():
    with pytest.raises(ConfigError, match="model.pooling must be one of"):
        tiny(pooling="max")


def test_unloadable_model_says_offline_and_how_to_use_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"cannot load model 'no-such-org/no-such-model'.*HF_HUB_OFFLINE=1.*local folder"):
        Encoder("no-such-org/no-such-model")


def test_real_minilm_gives_sentence_transformers_embedding():
    """model=minilm reproduces the packaged sentence-transformers model's own embedding."""
    st = pytest.importorskip("sentence_transformers")
    texts = ["Where is the Eiffel tower?", "The Eiffel tower is in Paris."]
    ours = Encoder(minilm_path(), pooling="mean").encode(texts, "passage")
    ref = st.SentenceTransformer(minilm_path(), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(ours, F.normalize(ref, dim=-1), atol=1e-5, rtol=1e-4)


def compiled_step(encoder):
    """Loss and gradients of one in-batch InfoNCE step with length-bucketed batches."""
    from mdr.model.loss import InfoNCELoss

    queries, passages = ["where is the station", "who wrote it", "when"], ["north of the river", "she did, in 1905", "1890"]
    q = encoder(**encoder.tokenization(queries, "query"))
    p = encoder(**encoder.tokenization(passages, "passage"))
    loss, _ = InfoNCELoss()(q, p, torch.arange(3))
    loss.backward()
    return loss.item(), [x.grad.clone() for x in encoder.parameters() if x.requires_grad]


def test_length_buckets_pad_to_a_multiple_and_stop_at_the_limit():
    enc = tiny(pad_to_multiple_of=16, passage_max_length=40)
    assert enc.tokenization(["a b"], "query")["input_ids"].shape[1] == 16
    long = enc.tokenization([" ".join(["word"] * 100)], "passage")
    assert long["input_ids"].shape[1] == 40 and long["attention_mask"].sum() == 40  # 48 would pass the limit
    with pytest.raises(ConfigError, match=r"model\.pad_to_multiple_of must be a positive integer"):
        tiny(pad_to_multiple_of=0)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_encoder_gives_the_eager_loss_and_gradients(backend):
    """torch.compile (in place: the same parameter names) on the CPU; inductor generates code (slow)."""
    eager, loss = compiled_step(tiny(pad_to_multiple_of=16)), None
    compiled = tiny(pad_to_multiple_of=16, compile=True, compile_backend=backend)
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in tiny().named_parameters()]
    loss, grads = compiled_step(compiled)
    assert loss == pytest.approx(eager[0], abs=1e-5)
    assert all(torch.allclose(g, e, atol=1e-5) for g, e in zip(grads, eager[1]))
