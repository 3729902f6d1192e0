"""Write a trained encoder as a Hugging Face + sentence-transformers folder.

In:  an ``Encoder`` (e.g. from ``mdr.model.checkpoint.load_checkpoint_encoder``), the resolved
     ``model`` config it was built from, and optionally a Markdown evaluation section.
Out: a folder that ``SentenceTransformer(folder)`` loads with the same pooling, normalisation,
     query / passage prefixes (as the prompts ``query`` and ``passage``) and max length as the
     Lightning module, and that ``AutoModel.from_pretrained(folder)`` also loads; its README.md is
     a model card holding the evaluation section.

Pooling ``pooler`` (LaBSE) becomes CLS pooling followed by a Dense(tanh) layer holding the
pooler's weights, which is how sentence-transformers represents it.
"""

from __future__ import annotations

import os

from mdr.model.encoder import Encoder


def write_sentence_transformers_folder(encoder: Encoder, model_config: dict, out: str, evaluation: str | None = None) -> str:
    """Write ``out`` (see the module docstring); returns ``out``. A pooling that sentence-transformers
    cannot represent is one ConfigError, never a silent CLS."""
    from sentence_transformers import SentenceTransformer

    hf_dir = os.path.join(out, "0_Transformer")
    encoder.save_pretrained(hf_dir)
    st = SentenceTransformer(modules=encoder.sentence_transformers_modules(hf_dir), prompts=encoder.prompts)
    st.save(out)
    encoder.save_pretrained(out)  # the plain Hugging Face view of the same weights at the top level as well
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(model_card(model_config, encoder, evaluation))
    return out


def model_card(model_config: dict, encoder: Encoder, evaluation: str | None) -> str:
    tok = encoder.tokenization
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
    if evaluation:
        lines += ["", "## Evaluation", "", evaluation]
    return "\n".join(lines) + "\n"
