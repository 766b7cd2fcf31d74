"""Text encoders for retrieval: sentence-transformers or a plain transformers encoder with mean
or CLS pooling, by HF id or path, with asymmetric query/document models (MedCPT-style).

Encoders are loaded once per process and return L2-normalised float32 matrices (unless the spec
turns normalisation off)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from mkailin.backends import native_bf16, resolve_model_path
from mkailin.config import EncoderSpec
from mkailin.errors import MissingDependencyError, ModelError

_CACHE: dict[tuple, Encoder] = {}
_LOCK = threading.Lock()


class _TransformersModel:
    def __init__(self, path: str, spec: EncoderSpec, device: str):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.spec = spec
        self.device = device

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        out = []
        for i in range(0, len(texts), self.spec.batch_size):
            enc = self.tok(
                texts[i : i + self.spec.batch_size],
                padding=True,
                truncation=True,
                max_length=self.spec.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            if self.spec.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)


class _SentenceTransformersModel:
    def __init__(self, path: str, spec: EncoderSpec, device: str):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingDependencyError(
                "sentence-transformers", None, "sentence encoders"
            ) from None
        self.model = SentenceTransformer(path, device=device)
        self.model.max_seq_length = spec.max_length
        self.spec = spec

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.spec.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )

    @property
    def dim(self) -> int:
        get = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get())


class Encoder:
    """Documents and queries into vectors; ``name`` is the config key, ``model_id`` the model."""

    def __init__(self, spec: EncoderSpec, name: str = ""):
        import torch

        self.spec = spec
        self.name = name or spec.model
        self.model_id = spec.model + (f"|{spec.query_model}" if spec.query_model else "")
        device = (
            spec.device
            if spec.device != "auto"
            else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        kind = {
            "sentence-transformers": _SentenceTransformersModel,
            "transformers": _TransformersModel,
        }.get(spec.kind)
        if kind is None:
            raise ModelError(
                f"unknown encoder kind {spec.kind!r} (sentence-transformers or transformers)"
            )
        if spec.precision not in ("float32", "bf16", "auto-bf16"):
            raise ModelError(
                f"encoder precision must be float32, bf16 or auto-bf16, not {spec.precision!r}"
            )
        self.device = device
        self.bf16 = (
            spec.precision == "bf16"
            or spec.precision == "auto-bf16"
            and (torch.cuda.is_bf16_supported() if device.startswith("cuda") else native_bf16())
        )
        try:
            self.doc = kind(resolve_model_path(spec.model), spec, device)
            self.query = (
                kind(resolve_model_path(spec.query_model), spec, device)
                if spec.query_model
                else self.doc
            )
        except OSError as e:
            raise ModelError(
                f"cannot load encoder {spec.model!r}: {str(e).splitlines()[0]}"
            ) from None

    @property
    def dim(self) -> int:
        return self.doc.dim

    def _finish(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32)
        if self.spec.normalize and len(v):
            v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return v

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        """Under bfloat16 autocast when the spec asks for it: the vectors stay float32 and
        move by a cosine of about 3e-5 against a float32 pass."""
        if not self.bf16:
            return model.encode(texts)
        import torch

        with torch.autocast(
            "cuda" if self.device.startswith("cuda") else "cpu", dtype=torch.bfloat16
        ):
            return model.encode(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._finish(
            self._encode(self.doc, [self.spec.document_prefix + (t or "") for t in texts])
        )

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._finish(
            self._encode(self.query, [self.spec.query_prefix + (t or "") for t in texts])
        )


def get_encoder(spec: EncoderSpec, name: str = "") -> Encoder:
    key = (name, repr(spec))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = Encoder(spec, name)
        return _CACHE[key]
