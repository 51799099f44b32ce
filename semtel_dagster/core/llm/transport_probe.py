"""What an endpoint supports, asked of the endpoint itself: each structured-output mode tried with a
tiny classification request (valid only if the answer is JSON matching the schema), its latency,
whether the server sends rate-limit headers (without them quotas must be declared in the file), and
whether it streams: a whole answer, with the usage as its last event, and still whole when a second
request arrives meanwhile (llama-cpp-python ends the first early unless started with
``--interrupt_requests False``)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field

import aiohttp

from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.redact import redact
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.stream import Deadline, Limits, StreamCutShort
from semtel_dagster.core.llm.structured import (
    STRUCTURED_OUTPUT_MODES,
    StructuredOutput,
    response_schema,
    single_choice,
    structured_fields,
)
from semtel_dagster.core.llm.transport import Answer, Transport, error_message

PROBE_LABELS = ["positive", "negative", "neutral"]
# preference when several modes work: enforced schema first, plain prompt text last
PREFERENCE = ("json_schema", "json_object_schema", "guided", "json_object", "none")
_RATE_HEADERS = ("x-ratelimit-", "retry-after")


def probe_request() -> LLMRequest:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": PROBE_LABELS}},
        "required": ["label"],
        "additionalProperties": False,
    }
    return LLMRequest(
        request_id="probe",
        week_start=None,
        conversation_ids=(),
        classifiers=("sentiment",),
        prompt_name="probe",
        prompt_version="probe",
        messages=[
            {
                "role": "system",
                "content": "Classify the sentiment of the user's message as positive, negative or neutral. "
                'Answer with JSON only: {"label": "<label>"}.',
            },
            {"role": "user", "content": "Thank you so much, this works perfectly!"},
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "sentiment_label", "strict": True, "schema": schema}},
        max_tokens=32,
        temperature=0.0,
        prompt_tokens=60,
    )


def valid_answer(content: str, mode: StructuredOutput, request: LLMRequest) -> bool:
    """JSON matching the schema (a bare label where ``guided_choice`` constrains the answer to one)."""
    text = content.strip()
    fields = structured_fields(mode, request.response_format)
    if "guided_choice" in fields and text in fields["guided_choice"]:
        return True
    try:
        answer = json.loads(text)
    except ValueError:
        return False
    labels = single_choice(response_schema(request.response_format)) or []
    return isinstance(answer, dict) and set(answer) == {"label"} and answer["label"] in labels


@dataclass
class ModeResult:
    mode: str
    supported: bool
    status: int | None
    latency_ms: float | None
    detail: str  # the answer, or why it failed (redacted, short)


@dataclass
class StreamResult:
    streams: bool  # a streamed 200 with a finished answer
    usage: bool  # ... whose last event carried the usage
    whole_when_shared: bool | None  # two at once both finished (None: not tried)
    first_event_ms: float | None
    detail: str  # why not, or what was dropped (redacted, short)

    @property
    def recommended(self) -> str:
        return "auto" if self.streams and self.whole_when_shared is not False else "false"


@dataclass
class EndpointReport:
    name: str
    kind: str
    configured: str
    stream_configured: bool | str = "auto"
    modes: list[ModeResult] = field(default_factory=list)
    rate_limit_headers: list[str] = field(default_factory=list)
    stream: StreamResult | None = None

    @property
    def supported(self) -> list[str]:
        return [m.mode for m in self.modes if m.supported]

    @property
    def recommended(self) -> str | None:
        return next((mode for mode in PREFERENCE if mode in self.supported), None)

    @property
    def stream_ok(self) -> bool:
        """``stream: true`` only where the server streams whole answers."""
        return self.stream_configured is not True or self.stream is None or self.stream.recommended == "auto"

    def as_dict(self) -> dict:
        stream = {**asdict(self.stream), "recommended": self.stream.recommended} if self.stream else None
        return {**asdict(self), "stream": stream, "supported": self.supported, "recommended": self.recommended}


def _limits(timeout_s: float) -> Limits:
    return Limits(total_s=timeout_s, queue_s=timeout_s, work_s=timeout_s, stall_s=timeout_s)


async def probe_endpoint(endpoint: Endpoint, modes=STRUCTURED_OUTPUT_MODES, timeout_s: float = 60.0) -> EndpointReport:
    """Each mode in turn (servers that answer one request at a time are not queued against themselves),
    plainly; then streaming."""
    report = EndpointReport(endpoint.name, endpoint.kind, endpoint.structured_output, endpoint.stream)
    request = probe_request()
    transport = Transport(endpoint.model_copy(update={"stream": False}))
    secrets = transport.secrets
    seen: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for mode in modes:
            started = time.monotonic()
            status = None
            try:
                answer = await transport.post(
                    session, request, await transport.headers(), Deadline(_limits(timeout_s), False), mode
                )
                status = answer.status
                seen |= {h.lower() for h in answer.headers if h.lower().startswith(_RATE_HEADERS)}
                latency = (time.monotonic() - started) * 1000.0
                if answer.body is None:
                    detail = f"HTTP {status}: {answer.content[:2000].decode('utf-8', 'replace')}"
                    result = ModeResult(mode, False, status, latency, detail)
                else:
                    text = answer.body["choices"][0]["message"]["content"]
                    ok = valid_answer(text, mode, request)
                    result = ModeResult(mode, ok, status, latency, text if ok else f"not JSON matching the schema: {text}")
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, IndexError, TypeError) as exc:
                result = ModeResult(mode, False, status, None, f"{type(exc).__name__}: {exc}")
            result.detail = _redacted(result.detail, secrets(), request)
            report.modes.append(result)
        report.stream = await _probe_stream(session, endpoint, request, timeout_s)
    report.rate_limit_headers = sorted(seen)
    return report


async def _probe_stream(
    session: aiohttp.ClientSession, endpoint: Endpoint, request: LLMRequest, timeout_s: float
) -> StreamResult:
    """One streamed request asking for the usage (a refused ``stream_options`` is dropped and said), then
    two at once: a server that ends one stream for the next cuts answers short under concurrency."""
    transport = Transport(endpoint.model_copy(update={"stream": True}))

    async def streamed() -> tuple[Answer, Deadline]:
        deadline = Deadline(_limits(timeout_s), True)
        return await transport.post(session, request, await transport.headers(), deadline, "none"), deadline

    started = time.monotonic()
    try:
        answer, deadline = await streamed()
    except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, IndexError, TypeError) as exc:
        return StreamResult(False, False, None, None, _redacted(f"{type(exc).__name__}: {exc}", transport.secrets(), request))
    first_ms = (deadline.first_event_at - started) * 1000.0 if deadline.first_event_at is not None else None
    if answer.body is None:
        detail = f"refused: HTTP {answer.status}: {error_message(answer.content)}"
        return StreamResult(False, False, None, None, _redacted(detail, transport.secrets(), request))
    if not answer.streamed:
        return StreamResult(False, False, None, None, "answered with a plain body")
    usage = "usage" in answer.body
    detail = "" if usage else "stream_options refused: no usage in stream" if not transport.stream_usage else "no usage in stream"
    results = await asyncio.gather(streamed(), streamed(), return_exceptions=True)
    cut = [r for r in results if isinstance(r, StreamCutShort)]
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, StreamCutShort)]
    whole = None if failed and not cut else not cut
    if cut:
        detail = "; ".join(filter(None, [detail, "ends a stream early when another request arrives"]))
    elif failed:
        detail = "; ".join(filter(None, [detail, f"two at once: {type(failed[0]).__name__}: {failed[0]}"]))
    return StreamResult(True, usage, whole, first_ms, _redacted(detail, transport.secrets(), request))


def _redacted(detail: str, secrets: list[str], request: LLMRequest) -> str:
    return redact(detail, secrets, [m["content"] for m in request.messages])[:120]


async def probe_endpoints(
    endpoints: list[Endpoint], modes=STRUCTURED_OUTPUT_MODES, timeout_s: float = 60.0
) -> list[EndpointReport]:
    return list(await asyncio.gather(*(probe_endpoint(e, modes, timeout_s) for e in endpoints)))


def report_table(reports: list[EndpointReport]) -> str:
    """A plain-text table: one line per endpoint and mode, then each endpoint's verdict."""
    lines = [f"{'endpoint':<16} {'mode':<19} {'ok':<4} {'status':<7} {'latency_ms':>10}  detail"]
    for report in reports:
        for m in report.modes:
            latency = f"{m.latency_ms:.0f}" if m.latency_ms is not None else "-"
            status = str(m.status) if m.status is not None else "-"
            detail = m.detail.replace("\n", " ")[:70]
            lines.append(
                f"{report.name:<16} {m.mode:<19} {'yes' if m.supported else 'no':<4} {status:<7} {latency:>10}  {detail}"
            )
    lines.append("")
    for report in reports:
        headers = ", ".join(report.rate_limit_headers) or "none (declare tpm/rpm in the file)"
        verdict = "supported" if report.configured in report.supported else "NOT supported"
        lines.append(
            f"{report.name}: configured structured_output {report.configured}: {verdict}; "
            f"recommended: {report.recommended or 'none works'}; rate-limit headers: {headers}"
        )
        if report.stream is not None:
            lines.append(f"{report.name}: {_stream_line(report.stream, report.stream_configured)}")
    return "\n".join(lines)


def _stream_line(result: StreamResult, configured: bool | str) -> str:
    if not result.streams:
        return f"streams: no ({result.detail}); configured stream {str(configured).lower()}, recommended: false"
    first = f", first event after {result.first_event_ms:.0f} ms" if result.first_event_ms is not None else ""
    usage = "yes" if result.usage else "no (tokens are then counted locally)"
    whole = {True: "yes", False: "NO", None: "not known"}[result.whole_when_shared]
    hint = " (llama-cpp-python: start it with --interrupt_requests False)" if result.whole_when_shared is False else ""
    return (
        f"streams: yes{first}; usage in stream: {usage}; whole answers with two at once: {whole}{hint}; "
        f"configured stream {str(configured).lower()}, recommended: {result.recommended}"
    )
