"""What an endpoint supports, asked of the endpoint itself: each structured-output mode tried with a
tiny classification request (valid only if the answer is JSON matching the schema), its latency, and
whether the server sends rate-limit headers (without them quotas must be declared in the file)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field

import aiohttp

from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.redact import redact
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.structured import (
    STRUCTURED_OUTPUT_MODES,
    StructuredOutput,
    response_schema,
    single_choice,
    structured_fields,
)
from semtel_dagster.core.llm.transport import Transport, chat_body
from semtel_dagster.core.llm.transport_errors import read_capped

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
class EndpointReport:
    name: str
    kind: str
    configured: str
    modes: list[ModeResult] = field(default_factory=list)
    rate_limit_headers: list[str] = field(default_factory=list)

    @property
    def supported(self) -> list[str]:
        return [m.mode for m in self.modes if m.supported]

    @property
    def recommended(self) -> str | None:
        return next((mode for mode in PREFERENCE if mode in self.supported), None)

    def as_dict(self) -> dict:
        return {**asdict(self), "supported": self.supported, "recommended": self.recommended}


async def probe_endpoint(endpoint: Endpoint, modes=STRUCTURED_OUTPUT_MODES, timeout_s: float = 60.0) -> EndpointReport:
    """Each mode in turn (servers that answer one request at a time are not queued against themselves)."""
    report = EndpointReport(endpoint.name, endpoint.kind, endpoint.structured_output)
    request = probe_request()
    transport = Transport(endpoint)
    seen: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for mode in modes:
            started = time.monotonic()
            status = None
            try:
                async with session.post(
                    transport.url,
                    json=chat_body(request, endpoint, mode),
                    headers=await transport.headers(),
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    seen |= {h.lower() for h in response.headers if h.lower().startswith(_RATE_HEADERS)}
                    content = await read_capped(response, endpoint.max_response_bytes, truncate=status != 200)
                latency = (time.monotonic() - started) * 1000.0
                if status != 200:
                    detail = f"HTTP {status}: {content[:2000].decode('utf-8', 'replace')}"
                    result = ModeResult(mode, False, status, latency, detail)
                else:
                    answer = json.loads(content)["choices"][0]["message"]["content"] or ""
                    ok = valid_answer(answer, mode, request)
                    result = ModeResult(mode, ok, status, latency, answer if ok else f"not JSON matching the schema: {answer}")
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, IndexError, TypeError) as exc:
                result = ModeResult(mode, False, status, None, f"{type(exc).__name__}: {exc}")
            result.detail = redact(result.detail, transport.secrets(), [m["content"] for m in request.messages])[:120]
            report.modes.append(result)
    report.rate_limit_headers = sorted(seen)
    return report


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
    return "\n".join(lines)
