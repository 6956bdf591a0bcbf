"""The WebSocket channel: hearth's own streaming protocol on ``/ws`` (see ``protocol``)."""

from .channel import WebSocketChannel

__all__ = ["WebSocketChannel"]
