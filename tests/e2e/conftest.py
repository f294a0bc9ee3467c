"""Fixtures shared by the e2e tests live in their own modules; this makes them visible here."""

import pytest
from apiserver_fixture import apiserver  # noqa: F401
from control_plane_fixture import real_control_plane, real_crds, real_sandbox  # noqa: F401
from operator_fixture import (  # noqa: F401
    cluster,
    emulated_cluster,
    emulated_operator,
    emulated_plane,
    env,
    kube_plane,
    operator,
    plane,
    real_cluster,
    real_operator,
    real_plane,
)
from sim import jibris  # noqa: F401


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed test that used the shared operator shows that operator's last log lines.

    pytest cannot render a traceback holding a frame without a line number (seen when the
    timeout's signal interrupts an await): it would abort the whole run with an INTERNALERROR.
    Such a failure is reported with Python's own traceback instead."""
    try:
        report = yield
    except TypeError:
        style = item.config.option.tbstyle
        item.config.option.tbstyle = "native"
        try:
            report = pytest.TestReport.from_item_and_call(item, call)
        finally:
            item.config.option.tbstyle = style
    if report.when == "call" and report.failed:
        process = getattr(item, "funcargs", {}).get("operator")
        if process is not None:
            report.sections.append(("operator log (last 80 lines)", process.tail(80)))
    return report
