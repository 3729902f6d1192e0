"""The shared encoder (config group ``model``): one Hugging Face ``AutoModel`` for queries and passages.

In:  lists of query or passage texts.
Out: [N, dim] float embeddings, pooled (``cls``, ``mean`` or ``pooler``) and L2-normalised.

``Tokenization`` (tokenizer, prefixes, max lengths) is a separate picklable object so that
DataLoader workers can tokenise without a copy of the model.

What the rest of the project uses of an ``Encoder`` (its public surface): ``encode`` (evaluation,
mining), ``forward`` on tokenised inputs (training), ``tokenization`` (handed to the data loaders),
``pooling`` / ``normalize`` / ``dim`` / ``name_or_path``, ``optional_weights`` (state-dict keys a
checkpoint may lack) and, for export, ``save_pretrained`` and ``sentence_transformers_modules``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from mdr.errors import ConfigError

POOLINGS = ("cls", "mean", "pooler")
# sentence-transformers' Pooling mode for each of ours ("pooler" is CLS followed by a Dense(tanh) layer)
EXPORTED_POOLING = {"cls": "cls", "mean": "mean", "pooler": "cls"}


@dataclass
class Tokenization:
    """Turns texts into padded model inputs; padding is dynamic (longest text in the batch)."""

    tokenizer: PreTrainedTokenizerBase
    query_prefix: str = ""
    passage_prefix: str = ""
    query_max_length: int = 64
    passage_max_length: int = 256
    pad_to_multiple_of: int | None = None  # length buckets: few distinct shapes (torch.compile, tensor cores)

    def _prefix_and_max_length(self, kind: str) -> tuple[str, int]:
        if kind == "query":
            return self.query_prefix, self.query_max_length
        if kind == "passage":
            return self.passage_prefix, self.passage_max_length
        raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")

    def __call__(self, texts: Sequence[str], kind: str) -> dict[str, torch.Tensor]:
        prefix, max_length = self._prefix_and_max_length(kind)
        texts = [prefix + t for t in texts] if prefix else list(texts)
        if self.pad_to_multiple_of is None:
            return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))
        # tokenize, then pad to the bucket (the tokenizer refuses both at once unless max_length is a multiple)
        unpadded = self.tokenizer(texts, truncation=True, max_length=max_length)
        inputs = self.tokenizer.pad(unpadded, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        if inputs["input_ids"].shape[1] > max_length:  # a bucket past the limit: the limit is the last bucket
            inputs = {k: v[:, :max_length] for k, v in inputs.items()}
        return dict(inputs)

    def lengths(self, texts: Sequence[str], kind: str, block: int = 8192) -> np.ndarray:
        """Token count of each text after truncation (in blocks, so no token lists pile up)."""
        prefix, max_length = self._prefix_and_max_length(kind)
        out = np.empty(len(texts), dtype=np.int64)
        for start in range(0, len(texts), block):
            part = [prefix + t for t in texts[start : start + block]]
            ids = self.tokenizer(part, truncation=True, max_length=max_length)["input_ids"]
            out[start : start + len(part)] = [len(x) for x in ids]
        return out


def bf16_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (tensor cores), nothing elsewhere: CPU inference and timing stay fp32."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _load_error(name: str, err: Exception) -> ConfigError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = (
        "HF_HUB_OFFLINE=1 is set, so only the local cache is searched"
        if offline
        else "the Hugging Face Hub may be unreachable from this machine"
    )
    return ConfigError(
        f"cannot load model {name!r}: {hint}. Download it where the network works "
        f"(huggingface-cli download {name}) or set model.name_or_path to a local folder. ({type(err).__name__}: {err})"
    )


class Encoder(nn.Module):
    """A pretrained (or randomly initialised) transformer plus pooling and normalisation.

    Args:
        name_or_path: hub id or local folder.
        pooling: ``cls`` (first token), ``mean`` (masked mean), ``pooler`` (the model's pooler
            head, e.g. LaBSE's dense+tanh over CLS).
        normalize: L2-normalise embeddings.
        random_init: build the architecture from ``config_overrides`` with random weights
            (tokenizer still from ``name_or_path``) — for fast tests.
        gradient_checkpointing: trade compute for activation memory.
        attn_implementation: passed to ``from_pretrained`` ("sdpa" uses fused attention kernels;
            "flex_attention", "flash_attention_2" where installed).
        pad_to_multiple_of: pad every batch to a multiple of this many tokens (length buckets).
        compile: ``torch.compile`` the transformer (in place, so checkpoints keep their keys);
            ``compile_dynamic`` and ``compile_backend`` are passed on. Pair it with ``pad_to_multiple_of`` so
            that batches come in a few shapes and recompilation stays bounded.
    """

    def __init__(
        self,
        name_or_path: str,
        pooling: str = "mean",
        normalize: bool = True,
        query_prefix: str = "",
        passage_prefix: str = "",
        query_max_length: int = 64,
        passage_max_length: int = 256,
        gradient_checkpointing: bool = False,
        random_init: bool = False,
        config_overrides: dict[str, Any] | None = None,
        attn_implementation: str | None = "sdpa",
        pad_to_multiple_of: int | None = None,
        compile: bool = False,
        compile_dynamic: bool | None = None,
        compile_backend: str = "inductor",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"model.pooling must be one of {POOLINGS}, got {pooling!r}")
        self.name_or_path = name_or_path
        self.pooling = pooling
        self.normalize = normalize
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            if random_init:
                overrides = dict(config_overrides or {})
                model_type = overrides.pop("model_type", None)  # another architecture than the tokenizer's model
                config = (AutoConfig.for_model(model_type, **overrides) if model_type
                          else AutoConfig.from_pretrained(name_or_path, **overrides))
                self.model = AutoModel.from_config(config, **kwargs)
            else:
                self.model = AutoModel.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as e:
            raise _load_error(name_or_path, e) from None
        if pooling == "pooler" and getattr(self.model, "pooler", None) is None:
            raise ConfigError(f"model.pooling=pooler but {name_or_path!r} has no pooler head; use cls or mean")
        # an unused pooler head gets no gradient, which DDP rejects: it is taken out of the model (not
        # computed, not optimised) but kept, frozen, so that an export carries it and loads in
        # transformers without "newly initialized" weights (see ``with_idle_pooler``)
        self.idle_pooler = None
        if pooling != "pooler" and getattr(self.model, "pooler", None) is not None:
            self.idle_pooler = self.model.pooler.requires_grad_(False)
            self.model.pooler = None
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ConfigError(f"model.pad_to_multiple_of must be a positive integer or null, got {pad_to_multiple_of!r}")
        if compile:
            self.model.compile(dynamic=compile_dynamic, backend=compile_backend)
        self.tokenization = Tokenization(
            tokenizer, query_prefix, passage_prefix, query_max_length, passage_max_length, pad_to_multiple_of
        )

    @property
    def optional_weights(self) -> tuple[str, ...]:
        """Prefixes of this encoder's state-dict keys that a checkpoint may lack: the unused pooler
        head, which checkpoints of older versions dropped."""
        return ("idle_pooler.",) if self.idle_pooler is not None else ()

    def save_pretrained(self, folder: str) -> None:
        """The transformer (with its pooler head, used or not, so that ``AutoModel`` loads it whole)
        and the tokenizer, as a Hugging Face folder."""
        with self.with_idle_pooler() as model:
            model.save_pretrained(folder)
        self.tokenization.tokenizer.save_pretrained(folder)

    def sentence_transformers_modules(self, transformer_dir: str) -> list[nn.Module]:
        """The sentence-transformers modules that embed as ``encode`` does, over the Hugging Face folder
        ``transformer_dir`` written by ``save_pretrained``: the transformer (passage max length),
        pooling (``pooler``: CLS and a Dense(tanh) holding the pooler's weights), normalisation."""
        from sentence_transformers import models

        if self.pooling not in EXPORTED_POOLING:
            raise ConfigError(f"export: pooling {self.pooling!r} has no sentence-transformers counterpart "
                              f"(known: {', '.join(EXPORTED_POOLING)}); add it to EXPORTED_POOLING in mdr/model/encoder.py")
        modules = [models.Transformer(transformer_dir, max_seq_length=self.tokenization.passage_max_length),
                   models.Pooling(self.dim, pooling_mode=EXPORTED_POOLING[self.pooling])]
        if self.pooling == "pooler":
            dense = models.Dense(self.dim, self.dim, activation_function=torch.nn.Tanh())
            dense.linear.load_state_dict(self.model.pooler.dense.state_dict())
            modules.append(dense)
        if self.normalize:
            modules.append(models.Normalize())
        return modules

    @property
    def prompts(self) -> dict[str, str]:
        """The query / passage prefixes, as sentence-transformers prompts."""
        return {"query": self.tokenization.query_prefix, "passage": self.tokenization.passage_prefix}

    @contextlib.contextmanager
    def with_idle_pooler(self):
        """The model with its unused pooler head put back in place, e.g. to save it."""
        if self.idle_pooler is None:
            yield self.model
            return
        self.model.pooler = self.idle_pooler
        try:
            yield self.model
        finally:
            self.model.pooler = None

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        if self.pooling == "pooler":
            emb = out.pooler_output
        elif self.pooling == "cls":
            emb = out.last_hidden_state[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            emb = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(emb, dim=-1) if self.normalize else emb

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], kind: str, batch_size: int = 128) -> torch.Tensor:
        """Embed texts in batches sorted by token count (little padding); returns [N, dim] float32 on CPU."""
        if not texts:
            return torch.empty(0, self.dim)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        # batches of similar token counts: sorting by characters would mix, say, 50-character
        # Chinese (about 50 tokens) with 50-character English (about 12) and pad the latter 4x
        order = np.argsort(-self.tokenization.lengths(texts, kind), kind="stable").tolist()
        out = torch.empty(len(texts), self.dim)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            inputs = self.tokenization([texts[i] for i in idx], kind)
            with bf16_autocast(device):
                emb = self(**{k: v.to(device) for k, v in inputs.items()})
            out[idx] = emb.float().cpu()
        self.train(was_training)
        return out

