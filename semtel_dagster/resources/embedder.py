"""The embedder as a Dagster resource: the local offline model, or any ``/v1/embeddings`` endpoint.

The model is loaded on first use, not at resource setup, so runs that dedupe by exact hash only
never pay the model's start-up (about 10 s on two cores).
"""

import os
from collections.abc import Callable
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from semtel_dagster.core.prepare.embeddings import Embedder, LocalEmbedder, OpenAIEmbedder


class EmbedderResource(ConfigurableResource):
    kind: Literal["local", "openai"] = Field(
        default_factory=lambda: os.environ.get("SEMTEL_EMBEDDER", "local"),  # type: ignore[arg-type]  # the value is validated as config
        description="local: all-MiniLM-L6-v2 offline on this machine; openai: an OpenAI-compatible /v1/embeddings endpoint.",
    )
    base_url: str | None = Field(default=None, description="openai: base URL, e.g. https://host/v1.")
    model: str = Field(default="text-embedding-3-small", description="openai: embedding model name.")
    api_key_env: str | None = Field(default=None, description="openai: environment variable holding the key.")
    batch_size: int = Field(default=64, gt=0, description="Texts per model batch or HTTP request.")

    _embedder: Embedder | None = PrivateAttr(default=None)

    def embedder(self) -> Embedder:
        if self._embedder is None:
            if self.kind == "local":
                self._embedder = LocalEmbedder(batch_size=self.batch_size)
            else:
                if not self.base_url:
                    raise ValueError("embedder kind 'openai' needs base_url")
                key = os.environ.get(self.api_key_env, "") if self.api_key_env else "unused"
                self._embedder = OpenAIEmbedder(self.base_url, self.model, key or "unused", self.batch_size)
        return self._embedder

    def factory(self) -> Callable[[], Embedder]:
        """Builds this embedder where it is called (a Spark executor): it pickles, a loaded model never ships."""
        return EmbedderFactory({name: getattr(self, name) for name in type(self).model_fields})


class EmbedderFactory:
    """The embedder of ``config``, built on first call and kept, so one process (the Polars engine: dedupe,
    training, answering) loads the model once; pickling drops the built model."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self._built: Embedder | None = None

    def __call__(self) -> Embedder:
        if self._built is None:
            self._built = EmbedderResource(**self.config).embedder()
        return self._built

    def __getstate__(self) -> dict:
        return {"config": self.config, "_built": None}
