"""Chat platforms: Telegram, Slack, WhatsApp, and what they share (``common``)."""
