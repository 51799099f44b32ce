"""The classifier library: one Prompty file per classifier in ``prompts/``.

A classifier's label set, definitions and examples live in the file's ``metadata.labels``, so adding a
classifier is adding a file. The version stored with every label is a hash of the file's bytes: any
edit to wording, labels or model options is a new version. Prompty only renders here; requests are
sent by our own dispatcher, and connections stay in the endpoints file, not in prompts.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prompty

DEFAULT_MAX_TOKENS = 64


class PromptError(ValueError):
    """A prompt file that cannot be used as a classifier; the message names the file and field."""


@dataclass(frozen=True)
class Classifier:
    name: str
    path: Path
    version: str
    labels: tuple[str, ...]
    definitions: tuple[dict, ...]
    temperature: float
    max_tokens: int
    groups: dict[str, list[str]] = field(default_factory=dict)
    agent: Any = field(default=None, repr=False, compare=False)

    def render(self, transcript: str) -> list[dict[str, str]]:
        """OpenAI chat messages rendered by Prompty (a few ms each)."""
        rendered = prompty.prepare(self.agent, {"transcript": transcript, "labels": list(self.definitions)})
        return [
            {"role": message.role, "content": "".join(part.value for part in message.parts)}
            for message in rendered
        ]

    def messages(self, transcript: str) -> list[dict[str, str]]:
        """OpenAI chat messages for one conversation, from a template rendered once per classifier.

        Valid because transcripts are inserted verbatim (``frozen_template`` checks that) and are
        already free of role-marker lines (``truncate.render_transcript`` quotes them).
        """
        template = self._frozen_template()
        if template is None:
            return self.render(transcript)
        return [
            {"role": role, "content": content.replace(_SLOT, transcript) if role == slot_role else content}
            for role, content, slot_role in template
        ]

    def _frozen_template(self) -> list[tuple[str, str, str]] | None:
        cached = _FROZEN.get(self.version)
        if cached is None:
            cached = _FROZEN[self.version] = frozen_template(self)
        return cached or None

    def response_format(self) -> dict:
        """Strict JSON schema with the label set as an enum (structured outputs)."""
        return {
            "type": "json_schema",
            "json_schema": {
                "name": f"{self.name}_label",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"label": {"type": "string", "enum": list(self.labels)}},
                    "required": ["label"],
                    "additionalProperties": False,
                },
            },
        }


_SLOT = "\u2063TRANSCRIPT\u2063"
_FROZEN: dict[str, list] = {}


def frozen_template(classifier: Classifier) -> list[tuple[str, str, str]]:
    """Messages rendered with a placeholder transcript, or [] when the template transforms the
    transcript (filters, conditions) and must be rendered per conversation."""
    probe = "probe text"
    with_slot = classifier.render(_SLOT)
    slotted = [m for m in with_slot if m["content"].count(_SLOT) == 1]
    if len(slotted) != 1 or any(_SLOT in m["content"] for m in with_slot if m is not slotted[0]):
        return []
    slot_role = slotted[0]["role"]
    template = [(m["role"], m["content"], slot_role) for m in with_slot]
    expected = [
        {"role": role, "content": content.replace(_SLOT, probe) if role == slot_role else content}
        for role, content, _ in template
    ]
    return template if classifier.render(probe) == expected else []


def default_prompts_dir() -> Path:
    """``SEMTEL_PROMPTS``, else ``./prompts``, else the ``prompts/`` beside this checkout."""
    if env := os.environ.get("SEMTEL_PROMPTS"):
        return Path(env)
    local = Path.cwd() / "prompts"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "prompts"


def load_classifier(path: Path) -> Classifier:
    raw = path.read_bytes()
    try:
        agent = prompty.load(str(path))
    except Exception as exc:  # prompty raises plain ValueErrors naming the field
        raise PromptError(f"{path}: {exc}") from exc
    metadata = agent.metadata or {}
    definitions = metadata.get("labels")
    if not isinstance(definitions, list) or not definitions:
        raise PromptError(f"{path}: metadata.labels must be a non-empty list of {{name, definition}}")
    labels = []
    for index, entry in enumerate(definitions):
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip() or not entry.get("definition"):
            raise PromptError(f"{path}: metadata.labels[{index}] needs a name and a definition")
        labels.append(str(entry["name"]).strip())
    if len(set(labels)) != len(labels):
        raise PromptError(f"{path}: metadata.labels has duplicate names")
    input_names = {prop.name for prop in agent.inputs or []}
    if "transcript" not in input_names:
        raise PromptError(f"{path}: inputs must declare `transcript`")
    options = agent.model.options if agent.model else None
    name = str(metadata.get("classifier") or agent.name or path.stem)
    return Classifier(
        name=name,
        path=path,
        version=hashlib.sha256(raw).hexdigest()[:12],
        labels=tuple(labels),
        definitions=tuple({**entry, "name": str(entry["name"]).strip()} for entry in definitions),
        temperature=float(options.temperature) if options and options.temperature is not None else 0.0,
        max_tokens=int(options.max_output_tokens) if options and options.max_output_tokens else DEFAULT_MAX_TOKENS,
        groups=dict(metadata.get("groups") or {}),
        agent=agent,
    )


def load_classifiers(prompts_dir: Path | None = None, names: list[str] | None = None) -> dict[str, Classifier]:
    """All classifiers in the folder (sorted by name), or the named ones; unknown names are an error."""
    folder = Path(prompts_dir) if prompts_dir else default_prompts_dir()
    found: dict[str, Classifier] = {}
    for path in sorted(folder.glob("*.prompty")):
        classifier = load_classifier(path)
        if classifier.name in found:
            raise PromptError(f"{path}: classifier {classifier.name!r} is also defined in {found[classifier.name].path}")
        found[classifier.name] = classifier
    if not found:
        raise PromptError(f"no .prompty files in {folder}")
    if names:
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise PromptError(f"unknown classifiers {unknown}; available: {sorted(found)}")
        return {name: found[name] for name in names}
    return found
