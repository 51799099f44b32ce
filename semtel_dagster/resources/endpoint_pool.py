"""The LLM endpoint pool as a Dagster resource (also used without Dagster by ``semtel classify``).

The endpoints come from an endpoints file (``SEMTEL_ENDPOINTS`` or config). The simulator runs only
where asked for: ``SEMTEL_ENDPOINTS=sim`` (the embedded pair of simulated deployments, as ``semtel
demo`` uses) or ``kind: sim`` entries in the file; without endpoints a run fails and says how to
configure them, so a deployment that loses its configuration never writes simulated labels. Keys
come from the environment only.
"""

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.evaluation.experiment import EndpointChoice
from semtel_dagster.core.llm.endpoints import Endpoint, EndpointsFileError, ModelPrice, SimEndpoint, load_endpoints
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.prepare.embeddings import Embedder, LocalEmbedder, OnceEmbedder
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.embedding_labeler import LABELER_FEATURE

# Two simulated deployments with different quotas, like a large and a small regional deployment.
EMBEDDED_SIMULATOR = SimConfig(
    endpoints=[
        SimEndpointConfig(name="sim-east", model="sim-gpt-4o-mini", tpm=2_000_000, rpm=12_000, latency_ms=25.0, jitter=0.3),
        SimEndpointConfig(name="sim-west", model="sim-gpt-4o-mini", tpm=600_000, rpm=3_600, latency_ms=40.0, jitter=0.3),
    ]
)


SIMULATOR = "sim"  # the value of SEMTEL_ENDPOINTS (or endpoints_file) that asks for the embedded simulator
NO_ENDPOINTS = (
    "no LLM endpoints configured: set SEMTEL_ENDPOINTS to an endpoints YAML file (see the README, "
    "'Endpoints file'), or SEMTEL_ENDPOINTS=sim for the embedded simulator (simulated labels, for trying semtel out)"
)


def simulator_endpoints(simulator: SimulatorThread, config: SimConfig = EMBEDDED_SIMULATOR) -> list[Endpoint]:
    """Endpoints pointing at a running simulator, with the quotas it enforces declared."""
    return [
        SimEndpoint(
            name=e.name,
            base_url=simulator.base_url(e.name),
            model=e.model,
            tpm=e.tpm,
            rpm=e.rpm,
            quota_interval_s=e.tpm_interval_s,
        )
        for e in config.endpoints
    ]


class SimulatedPools:
    """Embedded simulators started on demand (on ``stack``), one per labeler and noise scale, for
    evaluations that compare labelers; ``updates`` apply to every simulated endpoint (anomaly rate,
    latency). Embedding labelers share one model (``embedder``, else the local model loaded on first
    use), and each text is embedded once."""

    def __init__(self, stack: ExitStack, embedder: Embedder | None = None, **updates: Any) -> None:
        self._stack, self._updates = stack, updates
        self._pools: dict[tuple[str, float | None], list[Endpoint]] = {}
        self._embedder = embedder

    def endpoints(self, labeler: str = "keyword", noise_scale: float | None = None) -> list[Endpoint]:
        key = (labeler, noise_scale)
        if key not in self._pools:
            update = {**self._updates, "labeler": labeler, "noise_scale": noise_scale}
            config = SimConfig(
                endpoints=[SimEndpointConfig.model_validate({**e.model_dump(), **update}) for e in EMBEDDED_SIMULATOR.endpoints]
            )
            if labeler == "embedding" and self._embedder is None:
                self._embedder = OnceEmbedder(LocalEmbedder(progress=False, feature=LABELER_FEATURE))
            embedder = self._embedder if labeler == "embedding" else None
            self._pools[key] = simulator_endpoints(self._stack.enter_context(SimulatorThread(config, embedder=embedder)), config)
        return self._pools[key]

    def for_choice(self, choice: EndpointChoice, default: list[Endpoint] | None = None) -> list[Endpoint]:
        """An evaluated configuration's endpoints: its file, a simulator with its labeler, else
        ``default`` (when given) or the embedded keyword simulator."""
        if choice.file:
            return load_endpoints(choice.file).endpoints
        if choice.simulated or default is None:
            return self.endpoints(choice.labeler or "keyword", choice.noise_scale)
        return default


def start_simulated(endpoints: list[Endpoint], stack: ExitStack) -> list[Endpoint]:
    """``kind: sim`` entries without a ``base_url`` pointed at a simulator started for the run (on
    ``stack``), serving each with its declared model, quotas and labeler; every other entry as it is."""
    wanted = [e for e in endpoints if isinstance(e, SimEndpoint) and e.base_url is None]
    if not wanted:
        return endpoints
    config = SimConfig(
        endpoints=[SimEndpointConfig(name=e.name, model=e.model, tpm=e.tpm, rpm=e.rpm, labeler=e.labeler) for e in wanted]
    )
    simulator = stack.enter_context(SimulatorThread(config))
    started = {e.name: e.model_copy(update={"base_url": simulator.base_url(e.name)}) for e in wanted}
    return [started.get(e.name, e) for e in endpoints]


class EndpointPoolResource(ConfigurableResource):
    """A pool of LLM endpoints from an endpoints file; the simulator only when asked for (``sim``)."""

    endpoints_file: str | None = Field(
        default_factory=lambda: os.environ.get("SEMTEL_ENDPOINTS"),
        description="Endpoints YAML (see README), or 'sim' for the embedded simulator. Unset: runs fail, saying so.",
    )
    max_attempts: int = Field(default=6, gt=0, description="Attempts per request across endpoints.")
    give_up_s: float = Field(
        default=25.0,
        gt=0,
        description="A request still failing this long after its first failure (429s aside) gets an error row "
        "(keep it below stop_after_failing_s, so one bad request cannot stop the run).",
    )
    stop_after_failing_s: float = Field(
        default=30.0, gt=0, description="Every endpoint failing this long, with no answer from any: the run stops and fails."
    )
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
    mode: Literal["per_endpoint", "online", "batch"] = Field(
        default="per_endpoint",
        description="batch: every endpoint answers through its provider's batch API (half price, up to 24 h); "
        "online: none does; per_endpoint: each endpoint's own mode in the endpoints file.",
    )

    _stack: ExitStack | None = PrivateAttr(default=None)
    _endpoints: list[Endpoint] | None = PrivateAttr(default=None)
    _prices: dict[str, ModelPrice] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext | None) -> None:
        if not self.endpoints_file:
            raise EndpointsFileError(NO_ENDPOINTS)
        self._stack = ExitStack()
        try:
            if self.endpoints_file == SIMULATOR:
                self._endpoints = simulator_endpoints(self._stack.enter_context(SimulatorThread(EMBEDDED_SIMULATOR)))
                return
            parsed = load_endpoints(self.endpoints_file)
            self._prices = parsed.prices
            self._endpoints = start_simulated(parsed.endpoints, self._stack)
        except BaseException:
            self.teardown_after_execution(context)
            raise

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
            give_up_s=self.give_up_s,
            stop_after_failing_s=self.stop_after_failing_s,
            budget_tokens=self.budget_tokens,
            budget_cost=self.budget_cost,
            prices=self._prices,
            hedge_quantile=self.hedge_quantile,
        )

    def calls(self) -> Calls:
        """What the classify stage needs of the pool (``core.answering.Calls``)."""
        mode = None if self.mode == "per_endpoint" else self.mode
        return Calls(self.endpoints, self.dispatch_settings(), self.flush_rows, self.flush_seconds, mode)
