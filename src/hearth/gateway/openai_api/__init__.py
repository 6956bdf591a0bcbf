"""The OpenAI-compatible API: ``/v1/chat/completions`` and ``/v1/models`` for existing clients."""

from .channel import OpenAIChannel

__all__ = ["OpenAIChannel"]
