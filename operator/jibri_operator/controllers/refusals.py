"""RBAC refusals: said once where they matter, retried without hammering the API server.

A call the operator's role does not allow (:class:`~jibri_operator.kube.client.Forbidden`)
is a setup error only a human can fix, and retrying it at once only floods the API
server and the logs. Each runner keeps one :class:`Refusals`:

- a refusal is logged and posted as a warning Event (reason ``Forbidden``) on the
  object concerned, naming the verb and the resource; the same refusal (verb and
  resource) is said again only after ``REPORT_EVERY``, however often it recurs;
- the controller shows it in the object's conditions too, where its status can still
  be written;
- retries wait ``RETRY_FIRST`` (1 s), doubling up to ``RETRY_MAX`` (a minute), so a refused call costs
  the API server at most one request a minute per object once the back-off is grown;
- the first success after a refusal is logged, and the back-off starts over.

Nothing here ever raises, crashes a daemon, or restarts the process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import kopf

from jibri_operator import metrics
from jibri_operator.kube.client import Forbidden

REASON: Final = "Forbidden"
RETRY_FIRST: Final = 1.0
RETRY_MAX: Final = 60.0
REPORT_EVERY: Final = 600.0


class Refusals:
    def __init__(
        self,
        body: Any,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.body = body
        self.logger = logger
        self.clock = clock
        self.delay = 0.0
        self.reported: dict[tuple[str, str, str], float] = {}

    @property
    def active(self) -> bool:
        """A refusal is outstanding: nothing has succeeded since."""
        return self.delay > 0

    def refused(self, error: Forbidden, event: bool = True) -> float:
        """Count and (unless said within REPORT_EVERY) report ``error``; return how long to wait
        before trying again. ``event=False`` when the caller's own status write posts the Event."""
        metrics.API_FORBIDDEN.labels(error.verb, error.qualified_resource).inc()
        now = self.clock()
        last = self.reported.get(error.key)
        if last is None or now - last >= REPORT_EVERY:
            self.reported[error.key] = now
            self.logger.warning(f"{REASON}: {error}")
            if event:
                kopf.warn(self.body, reason=REASON, message=str(error))
        self.delay = min(RETRY_MAX, self.delay * 2) if self.delay else RETRY_FIRST
        return self.delay

    def cleared(self) -> None:
        """Something the API server refused before has now succeeded: start over."""
        if self.delay:
            refused = ", ".join(f"{verb} {resource}" for verb, _, resource in sorted(self.reported))
            self.logger.info(f"the API server now permits what it refused ({refused})")
        self.delay = 0.0
        self.reported.clear()
