"""What ``train.py``, ``evaluate.py``, ``export.py`` and ``mine.py`` do, as functions of a composed Hydra config.

In:  a config composed from ``conf/`` (``train.yaml``, ``evaluate.yaml``, ``export.yaml``, ``mine.yaml``).
Out: the evaluation results (``{eval set: results}``), the exported folder, or the mining record;
     the run folder holds the checkpoints, ``results.json`` and the logger's files.

These are the recipes that wire the layers together (model, data, evaluation); each layer knows
nothing of the others. Callable from Python as well: compose a config with Hydra's ``compose``
after ``mdr.config.register_resolvers()``.
"""

from __future__ import annotations

import glob
import logging
import math
import os

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.trainer.states import TrainerStatus
from omegaconf import DictConfig, OmegaConf

from mdr.cli import output_dir
from mdr.config import instantiate
from mdr.errors import ConfigError, NumericalError
from mdr.evaluation.benchmark import EvalOptions, declared_metrics
from mdr.evaluation.callback import RetrievalEvalCallback, log_results
from mdr.evaluation.evaluator import RetrievalEvaluator
from mdr.evaluation.report import markdown_table, result_rows, results_report
from mdr.formats.results import RESULTS_FILE, read_json, train_results_path, write_results
from mdr.loggers import build_loggers, finish_loggers
from mdr.mining import RECORD_FILE, MiningOptions, mine_corpus, statistics_table
from mdr.model.checkpoint import AtomicCheckpointIO, load_checkpoint_encoder, read_checkpoint, weights_mismatch
from mdr.model.encoder import Encoder
from mdr.model.export import write_sentence_transformers_folder
from mdr.model.module import BiEncoderModule
from mdr.model.optim import training_options
from mdr.model.preemption import Preempted, PreemptionCheckpoint, hand_over, parse_signals, slurm_environment
from mdr.model.selection import build_selection
from mdr.resume import LAST, checkpoint_to_resume, finished_results, run_config

log = logging.getLogger(__name__)


def build_evaluator(eval_cfg: DictConfig, training_languages: list[str] | None = None) -> RetrievalEvaluator:
    """The ``eval`` group: every benchmark under ``eval.sets``, with the shared options;
    ``eval.training_languages``, when set, overrides the ones given."""
    sets = {name: instantiate(spec) for name, spec in eval_cfg.sets.items()}
    languages = eval_cfg.training_languages or training_languages
    options = EvalOptions(batch_size=eval_cfg.batch_size, chunk_size=eval_cfg.chunk_size, recall_at=tuple(eval_cfg.recall_at),
                          training_languages=tuple(languages) if languages else None)
    return RetrievalEvaluator(sets, options)


def train(cfg: DictConfig) -> dict[str, dict]:
    """Fit the encoder with the configured sampler, then evaluate; returns the eval results. In a run
    folder that holds a checkpoint it goes on from there (``ckpt_path=auto``, ``mdr.resume``); on a
    pre-emption signal it checkpoints and stops for the requeue (``mdr.model.preemption``)."""
    L.seed_everything(cfg.seed, workers=True)
    out = output_dir()
    config = run_config(cfg)  # stored in every checkpoint: what a resume must match
    done = finished_results(out, config)  # a job a resumed sweep finished before
    if done is not None:
        return done
    signals = parse_signals(cfg.get("preempt_signals"))
    encoder: Encoder = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)(sampler=instantiate(cfg.sampler), tokenization=encoder.tokenization, seed=cfg.seed)
    sampler = datamodule.build_sampler(0, int(cfg.trainer.get("num_nodes", 1) or 1) * _devices(cfg))  # fail fast on bad options
    data_record = {**datamodule.data_record(sampler), "max_epochs": cfg.trainer.get("max_epochs"),
                   "max_steps": cfg.trainer.get("max_steps")}
    log.info("training data: %s", _data_summary(data_record))
    if not cfg.loss.get("in_batch_positives", True) and not cfg.data.get("num_hard_negatives"):
        raise ConfigError("loss.in_batch_positives=false (the paper's Eq. 1) needs hard negatives: set data.num_hard_negatives >= 1")
    module_options, trainer_overrides = training_options(OmegaConf.to_container(cfg.optim, resolve=True),
                                                         OmegaConf.to_container(cfg.trainer, resolve=True))
    choices = run_choices(cfg)
    # the seen / unseen split: declared (eval.training_languages), else the training data's languages;
    # stored in checkpoints so that evaluate.py ckpt=... splits alike
    training_languages = list(cfg.eval.training_languages or datamodule.training_languages)
    module = BiEncoderModule(encoder, instantiate(cfg.loss), seed=cfg.seed, model_config=OmegaConf.to_container(cfg.model, resolve=True),
                             run_info={"training_languages": training_languages, "choices": choices, "config": config},
                             **module_options)

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    ckpt_dir = os.path.dirname(train_results_path(out))
    accumulate = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    selection = build_selection(OmegaConf.to_container(cfg.val, resolve=True), datamodule.has_validation, ckpt_dir,
                                accumulate, list(cfg.eval.sets))
    eval_cb = RetrievalEvalCallback(
        build_evaluator(cfg.eval, training_languages),
        results_path=str(train_results_path(out)),
        every_n_steps=cfg.eval.every_n_steps,
        extra={"overrides": overrides, "choices": choices, "model": cfg.model.name_or_path, "data": data_record,
               "data_subset": datamodule.data_subset},
        best=selection.best if selection else None,
        early_stopping=selection.early_stopping if selection else None,
    )
    ckpt_path, state = checkpoint_to_resume(cfg.ckpt_path, ckpt_dir, config)
    if state is not None:
        check_resumable(ckpt_path, module, state)
    loggers = build_loggers(cfg, out, choices, overrides, record={"training_data": data_record, "data_subset": datamodule.data_subset},
                            resume=ckpt_path is not None)
    # the step checkpoints after the selection's: Lightning keeps the order of its checkpoint callbacks, so a
    # step checkpoint written after a validation holds the selection's state of it (mdr.model.checkpoint)
    callbacks = [eval_cb, *(selection.callbacks if selection else []), instantiate(cfg.checkpoint, dirpath=ckpt_dir)]
    callbacks += [LearningRateMonitor(logging_interval="step")] if loggers else []
    # listed last: it runs after the ModelCheckpoints, so its checkpoint holds their state of the step
    callbacks += [PreemptionCheckpoint(os.path.join(ckpt_dir, LAST), signals)] if signals else []
    trainer_overrides.update(selection.trainer_overrides if selection else {})
    plugins = [AtomicCheckpointIO(), *slurm_environment()]
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers, plugins=plugins, **trainer_overrides)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if eval_cb.results is None and trainer.state.status == TrainerStatus.FINISHED:
            # resumed from the checkpoint of finished training (stopped in its final evaluation): Lightning skips fit
            eval_cb.on_train_end(trainer, module.to(trainer.strategy.root_device))
    except Preempted as stop:
        finish_loggers(loggers, preempted=True)
        loggers = None
        hand_over(stop)  # requeue and exit
    except NumericalError as e:
        kept = max(glob.glob(os.path.join(ckpt_dir, "*.ckpt")), key=os.path.getmtime, default=None)
        raise NumericalError(f"{e}; {f'last checkpoint kept: {kept}' if kept else 'no checkpoint was written'}") from None
    finally:
        finish_loggers(loggers)
    if trainer.is_global_zero and eval_cb.results is not None:
        print("\n" + results_report(eval_cb.results, cfg.model.name_or_path, choices.get("sampler")))
        print(f"\nresults: {eval_cb.results_path}")
    return eval_cb.results or {}


def _data_summary(record: dict) -> str:
    """One line: examples and rows per source, hard negatives, the epoch."""
    parts = []
    for name, source in record["sources"].items():
        negatives = sum(source["hard_negatives_per_language"].values())
        parts.append(f"{name}: {source['examples']} examples, {source['rows']} rows in {len(source['rows_per_language'])} languages"
                     + (f", {negatives} hard negatives" if negatives else "")
                     + (f", {source['share_of_batches']:.1%} of batches" if "share_of_batches" in source else ""))
    return "; ".join(parts) + f"; {record['steps_per_epoch']} steps of {record['global_batch_size']} per epoch"


CHOICE_GROUPS = ("sampler", "model", "data", "eval", "experiment")


def run_choices(cfg: DictConfig) -> dict[str, str]:
    """The options chosen for the main config groups (``sampler=hybrid``, ``model=labse``, ...), as
    Hydra composed them: the run's batching label is the sampler option's name, so ``en_en`` is
    never taken for ``xx``. A config composed without Hydra's runtime record has none."""
    if HydraConfig.initialized():
        chosen = HydraConfig.get().runtime.choices
    else:
        chosen = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    return {g: str(chosen[g]) for g in CHOICE_GROUPS if chosen.get(g) is not None}


def objective(cfg: DictConfig, results: dict[str, dict] | None) -> float:
    """What ``train.py`` returns to a Hydra sweeper: ``summary.select_metric`` of
    ``summary.select_set`` (defaults: the first eval set and the metric its benchmark declares for
    selection); NaN for a failed run."""
    summary = cfg.get("summary") or {}
    if not results:
        return math.nan
    name = summary.get("select_set") or next(iter(results))
    declared = declared_metrics(results.get(name, {})) if name in results else []
    metric = summary.get("select_metric") or next((m.name for m in declared if m.select), None)
    value = results.get(name, {}).get(metric)
    if not isinstance(value, float):
        known = sorted(m for m, v in results.get(name, {}).items() if isinstance(v, float))
        log.warning("summary.select_set/select_metric %s/%s is not in this run's results (eval sets %s; metrics of %s: %s); "
                    "the sweeper gets NaN", name, metric, list(results), name, known)
        return math.nan
    return float(value)


def build_trainer(trainer_cfg: DictConfig, **kwargs) -> L.Trainer:
    """The ``trainer`` group as a Lightning Trainer; an option Lightning rejects is one ConfigError."""
    try:
        return instantiate(trainer_cfg, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            raise ConfigError(f"trainer: {str(cause).splitlines()[0]}") from None
        raise


def check_resumable(ckpt_path: str, module: BiEncoderModule, state: dict) -> None:
    """The checkpoint's weights (``state``: its contents) must fit the configured model, before Lightning loads them."""
    optional = tuple(f"encoder.{prefix}" for prefix in module.encoder.optional_weights)
    problem = weights_mismatch(state["state_dict"], module.state_dict(), optional=optional)
    if problem:
        raise ConfigError(f"ckpt_path: {ckpt_path} was trained from {state.get('encoder_name_or_path')!r} and does not "
                          f"fit model={module.encoder.name_or_path!r} ({problem}); resume with the options it was trained with")


def _devices(cfg: DictConfig) -> int:
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return max(1, torch.cuda.device_count())  # "auto" / -1


def evaluate(cfg: DictConfig) -> dict[str, dict]:
    """Zero-shot evaluation of ``cfg.model`` (or a trained ``cfg.ckpt``) on ``cfg.eval``."""
    model_config = OmegaConf.to_container(cfg.model, resolve=True)
    run_info = {}
    if cfg.get("ckpt"):
        state = read_checkpoint(cfg.ckpt)
        encoder = load_checkpoint_encoder(cfg.ckpt, model_config, state)[0]
        run_info = state.get("run_info") or {}
    else:
        encoder = instantiate(cfg.model)
    if torch.cuda.is_available():
        encoder.cuda()
    results = build_evaluator(cfg.eval, run_info.get("training_languages"))(encoder)
    out = output_dir()
    path = os.path.join(out, RESULTS_FILE)
    results = write_results(path, {"model": encoder.name_or_path, "ckpt": cfg.get("ckpt"), "results": results})["results"]
    loggers = build_loggers(cfg, out) or []
    log_results(loggers, results, step=0, out_dir=out)  # also writes the heatmaps
    finish_loggers(loggers)
    print("\n" + results_report(results, encoder.name_or_path, run_info.get("choices", {}).get("sampler")))
    print(f"\nresults: {path} (heatmaps: {out}/*_matrix.png)")
    return results


def export_checkpoint(ckpt: str, out: str, model_config: dict | None = None) -> str:
    """A trained checkpoint -> a sentence-transformers folder whose model card holds the run's
    evaluation (the ``results.json`` beside the checkpoint, when there is one)."""
    encoder, model_config = load_checkpoint_encoder(ckpt, model_config)
    results_file = os.path.join(os.path.dirname(os.path.abspath(ckpt)), RESULTS_FILE)
    evaluation = None
    if os.path.isfile(results_file):
        run = read_json(results_file)
        evaluation = (f"Step {run.get('step')}; overrides: `{' '.join(run.get('overrides', []))}`\n\n"
                      + markdown_table(result_rows(run["results"])))
    return write_sentence_transformers_folder(encoder, model_config, out, evaluation)


def export(cfg: DictConfig) -> str:
    """``export.py ckpt=PATH out=DIR [model=...]``."""
    model = OmegaConf.to_container(cfg.model, resolve=True) if cfg.model else None
    out = export_checkpoint(cfg.ckpt, cfg.out, model)
    print(f"exported {cfg.ckpt} -> {out}")
    return out


def mine(cfg: DictConfig) -> dict:
    """``mine.py``: negatives for a parallel corpus (``mdr.mining``), written to ``cfg.out`` with their record."""
    options = MiningOptions.from_config(OmegaConf.to_container(cfg.mining, resolve=True))
    if cfg.data.get("sources"):
        raise ConfigError("data.sources: mine each corpus of a mixture on its own (data=parallel_files data.files=...)")
    files = cfg.data.files
    if OmegaConf.is_dict(files) or OmegaConf.is_list(files):  # a corpus builder (data=mmarco), or a list of paths
        files = instantiate(files) if OmegaConf.is_dict(files) else OmegaConf.to_container(files)
    model_config = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") else None
    encoder = None
    if cfg.get("ckpt"):
        encoder, model_config = load_checkpoint_encoder(cfg.ckpt, model_config)
    elif model_config and options.needs_encoder:
        encoder = instantiate(cfg.model)
    if encoder is not None and torch.cuda.is_available():
        encoder.cuda()
    choice = run_choices(cfg).get("model") if HydraConfig.initialized() else None
    model = {"option": choice, "name_or_path": encoder.name_or_path, "ckpt": cfg.get("ckpt")} if encoder else None
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    record = mine_corpus(files, cfg.out, options, encoder, model, languages=cfg.data.get("languages"),
                         cache_dir=cfg.data.get("cache_dir"), fmt=cfg.format, overwrite=cfg.overwrite, batch_size=cfg.batch_size,
                         block_size=cfg.block_size, search=cfg.search, work_dir=cfg.work_dir, progress=cfg.progress,
                         command=overrides)
    print("\n" + statistics_table(record["statistics"]))
    print(f"\nnegatives: {', '.join(record['output_files'])}\nrecord: {os.path.join(os.path.abspath(cfg.out), RECORD_FILE)}")
    return record
