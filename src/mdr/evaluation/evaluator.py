"""Runs the configured benchmarks (config group ``eval``) on one encoder.

In:  ``{name: Benchmark}`` (built by Hydra from ``eval.sets``) and the shared ``EvalOptions``.
Out: ``{name: results}``, each in the results shape of ``mdr.evaluation.benchmark``, every metric
     checked against its range.
"""

from __future__ import annotations

from collections.abc import Mapping

from mdr.evaluation.benchmark import Benchmark, EvalOptions, TextEncoder, check_results


class RetrievalEvaluator:
    """Evaluates an encoder on named benchmarks; ``__call__`` returns ``{name: results}``."""

    def __init__(self, sets: Mapping[str, Benchmark], batch_size: int = 128, chunk_size: int = 256) -> None:
        self.sets = dict(sets)
        self.options = EvalOptions(batch_size=batch_size, chunk_size=chunk_size)

    def __call__(self, encoder: TextEncoder) -> dict[str, dict]:
        return {name: check_results(name, benchmark.evaluate(encoder, self.options)) for name, benchmark in self.sets.items()}
