"""The LLM endpoint pool as a Dagster resource (also used without Dagster by ``semtel classify``).

With an endpoints file (``SEMTEL_ENDPOINTS`` or config) it talks to real OpenAI-compatible servers;
without one it starts the embedded simulator on loopback for the duration of the run, which is what
makes the project work on a laptop out of the box. Keys come from the environment only.
"""

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.llm.endpoints import Endpoint, ModelPrice, load_endpoints
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread

# Two simulated deployments with different quotas, like a large and a small regional deployment.
EMBEDDED_SIMULATOR = SimConfig(
    endpoints=[
        SimEndpointConfig(name="sim-east", model="sim-gpt-4o-mini", tpm=2_000_000, rpm=12_000, latency_ms=25.0, jitter=0.3),
        SimEndpointConfig(name="sim-west", model="sim-gpt-4o-mini", tpm=600_000, rpm=3_600, latency_ms=40.0, jitter=0.3),
    ]
)


def simulator_endpoints(simulator: SimulatorThread, config: SimConfig = EMBEDDED_SIMULATOR) -> list[Endpoint]:
    """Endpoints pointing at a running simulator, with the quotas it enforces declared."""
    return [
        Endpoint(name=e.name, base_url=simulator.base_url(e.name), model=e.model, tpm=e.tpm, rpm=e.rpm) for e in config.endpoints
    ]


class EndpointPoolResource(ConfigurableResource):
    """A pool of OpenAI-compatible endpoints; the embedded simulator when no endpoints file is given."""

    endpoints_file: str | None = Field(
        default_factory=lambda: os.environ.get("SEMTEL_ENDPOINTS"),
        description="Endpoints YAML (see README). Unset: start the embedded simulator for the run.",
    )
    max_attempts: int = Field(default=6, gt=0, description="Attempts per request across endpoints.")
    flush_rows: int = Field(default=200, gt=0, description="Commit answers to llm_responses every N rows ...")
    flush_seconds: float = Field(default=2.0, gt=0, description="... or every T seconds, whichever comes first.")
    budget_tokens: int | None = Field(
        default=None, gt=0, description="Stop dispatch before prompt + completion tokens of a run (retries included) pass this."
    )
    budget_cost: float | None = Field(
        default=None, gt=0, description="Stop dispatch before the run's cost passes this (needs `prices` in the endpoints file)."
    )
    hedge_quantile: float | None = Field(
        default=0.95, gt=0, lt=1, description="Send one duplicate of a request still running past this latency quantile."
    )

    _stack: ExitStack | None = PrivateAttr(default=None)
    _endpoints: list[Endpoint] | None = PrivateAttr(default=None)
    _prices: dict[str, ModelPrice] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext | None) -> None:
        if self.endpoints_file:
            parsed = load_endpoints(self.endpoints_file)
            self._endpoints, self._prices = parsed.endpoints, parsed.prices
            return
        self._stack = ExitStack()
        simulator = self._stack.enter_context(SimulatorThread(EMBEDDED_SIMULATOR))
        self._endpoints = simulator_endpoints(simulator)

    def teardown_after_execution(self, context: InitResourceContext | None) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    @property
    def endpoints(self) -> list[Endpoint]:
        if self._endpoints is None:
            raise RuntimeError("the endpoint pool is only available while a run executes")
        return self._endpoints

    @contextmanager
    def opened(self) -> Iterator["EndpointPoolResource"]:
        """The pool outside a Dagster run (``semtel classify``): set up, yield, tear down."""
        self.setup_for_execution(None)
        try:
            yield self
        finally:
            self.teardown_after_execution(None)

    def dispatch_settings(self) -> DispatchSettings:
        return DispatchSettings(
            max_attempts=self.max_attempts,
            budget_tokens=self.budget_tokens,
            budget_cost=self.budget_cost,
            prices=self._prices,
            hedge_quantile=self.hedge_quantile,
        )

    def calls(self) -> Calls:
        """What the classify stage needs of the pool (``core.answering.Calls``)."""
        return Calls(self.endpoints, self.dispatch_settings(), self.flush_rows, self.flush_seconds)
