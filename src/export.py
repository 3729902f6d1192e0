"""Export a trained checkpoint as a Hugging Face + sentence-transformers folder.

In:  a Lightning checkpoint written by ``train.py`` (it carries the resolved ``model`` config) and,
     if present, the ``results.json`` next to it.
Out: a folder that ``SentenceTransformer(folder)`` loads with the same pooling, normalisation,
     query / passage prefixes (as the prompts ``query`` and ``passage``) and max length as the
     Lightning module, and that ``AutoModel.from_pretrained(folder)`` also loads; its README.md is
     a model card holding the evaluation results.

Pooling ``pooler`` (LaBSE) becomes CLS pooling followed by a Dense(tanh) layer holding the
pooler's weights, which is how sentence-transformers represents it.
"""

from __future__ import annotations

import json
import os

import torch

from src.encoder import Encoder
from src.errors import ConfigError
from src.evaluation.report import markdown_table, result_rows


def load_checkpoint_encoder(ckpt: str, model_config: dict | None = None) -> tuple[Encoder, dict]:
    """The trained encoder of ``ckpt``; built from the checkpoint's own model config unless given."""
    from hydra.utils import instantiate

    if not os.path.isfile(ckpt):
        raise ConfigError(f"checkpoint not found: {ckpt}")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model_config = model_config or state.get("model_config")
    if not model_config:
        raise ConfigError(f"{ckpt} has no model config (written by an older version); pass model=<the model it was trained with>")
    encoder: Encoder = instantiate(model_config)
    weights = {k[len("encoder."):]: v for k, v in state["state_dict"].items() if k.startswith("encoder.")}
    try:
        missing, unexpected = encoder.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatches
        missing, unexpected = [str(e).splitlines()[0]], []
    if missing or unexpected or not weights:
        raise ConfigError(
            f"checkpoint {ckpt} was trained from {state.get('encoder_name_or_path')!r} and does not fit model="
            f"{encoder.name_or_path!r} ({len(missing)} missing, {len(unexpected)} unexpected weights); "
            "pass the model option it was trained with"
        )
    return encoder.eval(), model_config


def export(ckpt: str, out: str, model_config: dict | None = None) -> str:
    from sentence_transformers import SentenceTransformer, models

    encoder, model_config = load_checkpoint_encoder(ckpt, model_config)
    hf_dir = os.path.join(out, "0_Transformer")
    pooler = encoder.model.pooler if encoder.pooling == "pooler" else None
    encoder.model.save_pretrained(hf_dir)
    encoder.tokenization.tokenizer.save_pretrained(hf_dir)

    tok = encoder.tokenization
    transformer = models.Transformer(hf_dir, max_seq_length=tok.passage_max_length)
    dim = encoder.dim
    modules = [transformer, models.Pooling(dim, pooling_mode="mean" if encoder.pooling == "mean" else "cls")]
    if pooler is not None:
        dense = models.Dense(dim, dim, activation_function=torch.nn.Tanh())
        dense.linear.load_state_dict(pooler.dense.state_dict())
        modules.append(dense)
    if encoder.normalize:
        modules.append(models.Normalize())
    st = SentenceTransformer(modules=modules, prompts={"query": tok.query_prefix, "passage": tok.passage_prefix})
    st.save(out)
    # the plain Hugging Face view of the same weights at the top level as well
    encoder.model.save_pretrained(out)
    tok.tokenizer.save_pretrained(out)
    results_file = os.path.join(os.path.dirname(os.path.abspath(ckpt)), "results.json")
    results = json.load(open(results_file, encoding="utf-8")) if os.path.isfile(results_file) else None
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(model_card(model_config, tok, results))
    return out


def model_card(model_config: dict, tok, results: dict | None) -> str:
    base = model_config.get("name_or_path")
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, dense-retrieval, multilingual]",
        *( [f"base_model: {base}"] if base and not os.path.isabs(str(base)) else [] ),
        "---",
        "",
        f"# Multilingual retriever fine-tuned from `{base}`",
        "",
        "Trained with in-batch InfoNCE on parallel question-passage data (see the training project's README).",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "model = SentenceTransformer(PATH)",
        'q = model.encode(["..."], prompt_name="query")',
        'p = model.encode(["..."], prompt_name="passage")',
        "```",
        "",
        f"Pooling `{model_config.get('pooling')}`, normalised: {model_config.get('normalize')}, "
        f"max length query {tok.query_max_length} / passage {tok.passage_max_length} tokens.",
    ]
    if results:
        lines += ["", "## Evaluation", "", f"Step {results.get('step')}; overrides: `{' '.join(results.get('overrides', []))}`", "",
                  markdown_table(result_rows(results["results"]))]
    return "\n".join(lines) + "\n"
