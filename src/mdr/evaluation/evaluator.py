"""Runs the configured benchmarks (config group ``eval``) on one encoder.

In:  ``{name: Benchmark}`` (built by Hydra from ``eval.sets``) and the shared ``EvalOptions``.
Out: ``{name: results}``, each in the results shape of ``mdr.evaluation.benchmark``, with the
     benchmark's metric declaration, every metric checked against its declared range.
"""

from __future__ import annotations

from collections.abc import Mapping

from mdr.errors import ConfigError
from mdr.evaluation.benchmark import Benchmark, EvalOptions, Metric, TextEncoder, check_results, declare


class RetrievalEvaluator:
    """Evaluates an encoder on named benchmarks; ``__call__`` returns ``{name: results}``."""

    def __init__(self, sets: Mapping[str, Benchmark], options: EvalOptions = EvalOptions()) -> None:
        self.sets = dict(sets)
        self.options = options

    def __call__(self, encoder: TextEncoder) -> dict[str, dict]:
        return {name: self.evaluate_one(name, encoder) for name in self.sets}

    def metrics(self, name: str) -> list[Metric]:
        """What benchmark ``name`` declares it reports (before any encoding)."""
        bench = self.sets[name]
        if not callable(getattr(bench, "metrics", None)):
            raise ConfigError(f"eval set {name!r}: {type(bench).__name__} declares no metrics; a benchmark needs a "
                              "metrics(options) method (mdr.evaluation.benchmark.Benchmark)")
        return list(bench.metrics(self.options))

    def evaluate_one(self, name: str, encoder: TextEncoder) -> dict:
        """The results of one benchmark with its declaration, every metric checked against its range."""
        declared = self.metrics(name)
        return check_results(name, declare(self.sets[name].evaluate(encoder, self.options), declared))
