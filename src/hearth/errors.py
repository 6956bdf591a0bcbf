"""The one exception tree of hearth.

Every failure that crosses a module boundary is one of these. Vendor exceptions (aiohttp,
SQLAlchemy, asyncpg, ...) are translated where they are caught, with ``raise ... from exc``,
so that callers never match on strings or on a library's classes::

    HearthError                       code          next action
    ├── ConfigError                   config        ask the operator
    ├── NotReady                      not_ready     retry later
    ├── InvalidRequest                invalid       fix the input
    │   └── NotFound                  not_found     fix the input
    ├── Unauthenticated               unauthenticated  fix the input (credentials)
    ├── PermissionDenied              forbidden     give up
    ├── ModelError                    model_error   give up (the model refused the request)
    │   ├── ModelUnavailable          model_unavailable  retry later / fail over
    │   │   └── ModelBusy             model_busy    retry later
    │   ├── ModelTimeout              model_timeout retry later / fail over
    │   ├── RateLimited               rate_limited  retry after ``retry_after`` seconds
    │   └── ContextTooLong            context_too_long  give up (shorten the input)
    ├── SkillError                    skill_error   give up
    ├── DeliveryError                 delivery_error retry later
    └── StorageError                  storage_error ask the operator

Each error carries a ``code`` (stable, for clients and metrics), a ``next_action`` and a
``user_message``: a sentence safe to show to the person talking to hearth. ``str(error)``
is for operators and may hold detail; it must never hold a secret.
"""

from __future__ import annotations

from enum import StrEnum


class NextAction(StrEnum):
    """What the caller should do about an error."""

    RETRY = "retry"
    FIX_INPUT = "fix_input"
    ASK_OPERATOR = "ask_operator"
    GIVE_UP = "give_up"


class HearthError(Exception):
    """Base of every hearth error."""

    code: str = "internal"
    next_action: NextAction = NextAction.GIVE_UP
    default_user_message: str = "Something went wrong on the assistant's side."

    def __init__(self, message: str = "", *, user_message: str | None = None) -> None:
        super().__init__(message or self.default_user_message)
        self.user_message = user_message or self.default_user_message

    @property
    def retryable(self) -> bool:
        return self.next_action is NextAction.RETRY


class ConfigError(HearthError):
    """A setting is missing or wrong. ``variable`` names the environment variable."""

    code = "config"
    next_action = NextAction.ASK_OPERATOR
    default_user_message = "The assistant is misconfigured; the operator has been told."

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class NotReady(HearthError):
    code = "not_ready"
    next_action = NextAction.RETRY
    default_user_message = "The assistant is starting up; try again in a moment."


class InvalidRequest(HearthError):
    code = "invalid"
    next_action = NextAction.FIX_INPUT
    default_user_message = "That request was not understood."

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, user_message=message)
        if code is not None:
            self.code = code


class NotFound(InvalidRequest):
    code = "not_found"


class Unauthenticated(HearthError):
    code = "unauthenticated"
    next_action = NextAction.FIX_INPUT
    default_user_message = "A valid API key is required."


class PermissionDenied(HearthError):
    code = "forbidden"
    default_user_message = "You are not allowed to do that."


class ModelError(HearthError):
    """The model server answered, but not with a usable reply (a rejected request)."""

    code = "model_error"
    default_user_message = "The model could not answer this request."


class ModelUnavailable(ModelError):
    """No model endpoint could be reached (refused, reset, 5xx, breaker open)."""

    code = "model_unavailable"
    next_action = NextAction.RETRY
    default_user_message = (
        "No language model is reachable right now, so I can't answer. "
        "The operator has been told; please try again later."
    )


class ModelBusy(ModelUnavailable):
    """Every endpoint is at its concurrency limit and its queue is full."""

    code = "model_busy"
    default_user_message = "The assistant is busy with other requests; please try again in a moment."


class ModelTimeout(ModelError):
    code = "model_timeout"
    next_action = NextAction.RETRY
    default_user_message = "The model took too long to answer; please try again."


class RateLimited(ModelError):
    code = "rate_limited"
    next_action = NextAction.RETRY
    default_user_message = "The model server is rate limiting requests; please try again shortly."

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ContextTooLong(ModelError):
    code = "context_too_long"
    default_user_message = "That message is too long for the model; please shorten it."


class SkillError(HearthError):
    code = "skill_error"
    default_user_message = "A skill failed while handling your request."


class DeliveryError(HearthError):
    """A platform did not take a message. ``retry_after`` is the platform's own wait (Telegram's
    ``parameters.retry_after``, a 429's ``Retry-After``); ``permanent`` means trying again cannot help
    (a blocked bot, a deleted chat, a malformed message); ``channel_wide`` means the limit holds for every
    message of the channel, not just this address."""

    code = "delivery_error"
    next_action = NextAction.RETRY
    default_user_message = "The reply could not be delivered."

    def __init__(self, message: str = "", *, retry_after: float | None = None, permanent: bool = False,
                 channel_wide: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.channel_wide = channel_wide


class StorageError(HearthError):
    code = "storage_error"
    next_action = NextAction.ASK_OPERATOR
    default_user_message = "The assistant could not store your message; the operator has been told."
