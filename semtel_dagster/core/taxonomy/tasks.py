"""The prompts of taxonomy discovery (``prompts/taxonomy/*.prompty``) and the requests they make.

Unlike classifiers, these prompts answer open text (a summary, a list of labels), so their answer
schema is derived from the file's ``outputs`` as it stands and their completion budget is the file's
``maxOutputTokens``. ``metadata.task`` names the step a file serves; it is also the answer schema's
name (``SCHEMA_PREFIX`` + task), the one thing a provider sees that says which step asked, so the
simulator can answer each step without reading the prompt's wording.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prompty

from semtel_dagster.core.classify.prompts import PromptError, default_prompts_dir, load_agent
from semtel_dagster.core.llm.requests import LLMRequest, request_id
from semtel_dagster.core.prepare.tokens import count_tokens

SCHEMA_PREFIX = "semtel_taxonomy_"
TASKS = ("summarize", "generate", "update", "review", "name_cluster")
_MESSAGE_OVERHEAD_TOKENS = 4
_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "float": "number", "boolean": "boolean"}


def default_tasks_dir() -> Path:
    """``taxonomy/`` of the classifier folder (a subfolder, so never loaded as a classifier), else the
    one beside this checkout."""
    local = default_prompts_dir() / "taxonomy"
    return local if local.is_dir() else Path(__file__).resolve().parents[3] / "prompts" / "taxonomy"


def property_schema(prop: Any) -> dict:
    """Strict JSON schema of a Prompty output property (strings, numbers, arrays, objects)."""
    if prop.kind == "array":
        return {"type": "array", "items": property_schema(prop.items)}
    if prop.kind == "object":
        return object_schema(prop.properties or [])
    kind = _JSON_TYPES.get(prop.kind)
    if kind is None:
        raise ValueError(f"output {prop.name!r}: kind {prop.kind!r} has no JSON schema")
    schema: dict[str, Any] = {"type": kind}
    if prop.enum_values:
        schema["enum"] = list(prop.enum_values)
    return schema


def object_schema(properties: Sequence[Any]) -> dict:
    return {
        "type": "object",
        "properties": {p.name: property_schema(p) for p in properties},
        "required": [p.name for p in properties],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class TaskPrompt:
    """One step's prompt file: rendered by Prompty, sent by the project's dispatcher."""

    task: str
    path: Path
    version: str
    max_tokens: int
    temperature: float
    schema: dict
    agent: Any = field(repr=False, compare=False)

    def response_format(self) -> dict:
        return {"type": "json_schema", "json_schema": {"name": SCHEMA_PREFIX + self.task, "strict": True, "schema": self.schema}}

    def messages(self, inputs: dict[str, str]) -> list[dict[str, str]]:
        rendered = prompty.prepare(self.agent, inputs)
        return [{"role": m.role, "content": "".join(part.value for part in m.parts)} for m in rendered]

    def request(self, ids: Sequence[str], inputs: dict[str, str], week: Any = None) -> LLMRequest:
        """The request for ``inputs``; its id covers the ids, the prompt file and the inputs, so a rerun with
        the same inputs finds its answer and a changed input (another label set) is asked again."""
        version = hashlib.sha256(json.dumps([self.version, inputs], sort_keys=True).encode()).hexdigest()[:12]
        messages = self.messages(inputs)
        return LLMRequest(
            request_id=request_id(ids, [self.name], version),
            week_start=week,
            conversation_ids=tuple(ids),
            classifiers=(self.name,),
            prompt_name=self.name,
            prompt_version=version,
            messages=messages,
            response_format=self.response_format(),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            prompt_tokens=sum(count_tokens(m["content"]) + _MESSAGE_OVERHEAD_TOKENS for m in messages),
            strategy=self.name,
        )

    @property
    def name(self) -> str:
        return f"taxonomy_{self.task}"


def load_task(path: Path) -> TaskPrompt:
    raw, agent = load_agent(path)
    task = str((agent.metadata or {}).get("task") or "")
    if task not in TASKS:
        raise PromptError(f"{path}: metadata.task must be one of {TASKS}, got {task!r}")
    options = agent.model.options if agent.model else None
    if not options or not options.max_output_tokens:
        raise PromptError(f"{path}: model.options.maxOutputTokens must bound the answer (open text has no derived budget)")
    try:
        schema = object_schema(agent.outputs or [])
    except ValueError as exc:
        raise PromptError(f"{path}: outputs: {exc}") from None
    return TaskPrompt(
        task=task,
        path=path,
        version=hashlib.sha256(raw).hexdigest()[:12],
        max_tokens=int(options.max_output_tokens),
        temperature=float(options.temperature or 0.0),
        schema=schema,
        agent=agent,
    )


def load_tasks(folder: Path | None = None) -> dict[str, TaskPrompt]:
    """Every step's prompt, by task; a missing step is an error naming the folder."""
    folder = Path(folder) if folder else default_tasks_dir()
    found = {prompt.task: prompt for prompt in map(load_task, sorted(folder.glob("*.prompty")))}
    missing = sorted(set(TASKS) - set(found))
    if missing:
        raise PromptError(f"{folder}: no taxonomy prompt for {missing} (metadata.task)")
    return found
