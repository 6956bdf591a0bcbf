"""Model providers: one class per wire protocol, behind the ``ChatProvider`` protocol.

``make_provider`` is how the composition root turns an ``EndpointSettings`` into a provider, so
nothing else needs to know which class speaks which protocol.
"""

from __future__ import annotations

from hearth.errors import ConfigError
from hearth.models.base import ChatProvider, ProbeResult
from hearth.models.ollama import OllamaProvider
from hearth.models.openai import OpenAIProvider
from hearth.settings import EndpointSettings

__all__ = ["ChatProvider", "OllamaProvider", "OpenAIProvider", "ProbeResult", "make_provider"]


def make_provider(
    endpoint: EndpointSettings, *, connect_timeout: float = 5.0, context_tokens: int | None = None,
) -> ChatProvider:
    """The provider for ``endpoint.provider``. ``context_tokens`` only matters to Ollama (``num_ctx``),
    which otherwise truncates prompts to its own default window; OpenAI-compatible servers fix the
    window when they load the model."""
    if endpoint.provider == "ollama":
        return OllamaProvider(endpoint, connect_timeout=connect_timeout, context_tokens=context_tokens)
    if endpoint.provider == "openai":
        return OpenAIProvider(endpoint, connect_timeout=connect_timeout)
    raise ConfigError("AI_MODEL_PROVIDER", f"unknown provider {endpoint.provider!r} (ollama or openai)")
