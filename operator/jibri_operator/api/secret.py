"""A wrapper that keeps secrets (stream keys, passwords) out of logs and messages."""

from __future__ import annotations

from typing import Final, NoReturn

_MASK: Final = "***"


class Secret:
    """A string that prints as ``***``; call :meth:`reveal` where the wire needs it.

    ``repr``, ``str`` and ``format`` are all masked, so an f-string, a log line,
    an exception or a dataclass repr that carries it cannot leak the value.
    Pickling is refused for the same reason.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not picklable")
