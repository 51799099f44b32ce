"""Prompts laid out for providers' prompt caches, cached-token pricing, and the simulator's prefix cache."""

import json
import urllib.request

import polars as pl
import pytest

from semtel_dagster.core.classify.plan import plan_units
from semtel_dagster.core.classify.prompts import (
    LAYOUT_CLASSIFIER_FIRST,
    LAYOUT_CONVERSATION_FIRST,
    load_classifiers,
    multi_conversation_messages,
    with_layout,
)
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.budget import responses_cost
from semtel_dagster.core.llm.dispatch import usage_of
from semtel_dagster.core.llm.endpoints import ModelPrice
from semtel_dagster.core.llm.requests import request_id
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.prefix_cache import CACHE_STEP_TOKENS, MIN_CACHED_TOKENS, PrefixCache, block_digests, prompt_sequence

TRANSCRIPT = "User: my laptop wifi keeps dropping\n\nAssistant: Try updating the driver."


@pytest.fixture(scope="module")
def both():
    return load_classifiers(), load_classifiers(layout=LAYOUT_CONVERSATION_FIRST)


def test_conversation_first_shares_the_prefix_across_the_six_classifiers(both):
    _, laid_out = both
    assert len(laid_out) == 6
    prompts = [c.messages(TRANSCRIPT) for c in laid_out.values()]
    prefixes = {json.dumps(p[:2]) for p in prompts}
    assert len(prefixes) == 1  # the preamble and the conversation, identical for every classifier
    assert TRANSCRIPT in prompts[0][1]["content"]
    # The classifier's own instructions and label set come last, and differ per classifier.
    assert len({p[-1]["content"] for p in prompts}) == 6
    assert all(TRANSCRIPT not in p[-1]["content"] for p in prompts)
    assert "programming" in laid_out["topic"].messages(TRANSCRIPT)[-1]["content"]


def test_classifier_first_is_the_prompt_files_order_and_version(both):
    plain, laid_out = both
    for name, classifier in plain.items():
        assert classifier.version == classifier.file_version
        assert classifier.messages(TRANSCRIPT) == classifier.file_messages(TRANSCRIPT)
        assert classifier.messages(TRANSCRIPT)[0]["role"] == "system"
        assert TRANSCRIPT not in classifier.messages(TRANSCRIPT)[0]["content"]
        assert with_layout(laid_out[name], LAYOUT_CLASSIFIER_FIRST) == classifier


def test_the_layout_changes_every_digest(both):
    plain, laid_out = both
    for name in plain:
        assert plain[name].version != laid_out[name].version
        assert request_id(["c1"], [name], plain[name].version) != request_id(["c1"], [name], laid_out[name].version)
    plain_ids = {u.request_id for u in plan_units(["c1", "c2"], plain, "single", 8)}
    laid_ids = {u.request_id for u in plan_units(["c1", "c2"], laid_out, "single", 8)}
    assert not plain_ids & laid_ids
    with pytest.raises(ValueError, match="unknown prompt layout"):
        with_layout(plain["topic"], "sideways")


def test_conversation_first_sends_a_conversations_other_classifiers_together(both):
    _, laid_out = both
    order = [(u.conversation_ids[0], u.classifiers[0]) for u in plan_units(["a", "b"], laid_out, "single", 8)]
    first = next(iter(laid_out))
    assert order[:2] == [("a", first), ("b", first)]  # one pass writes every conversation's prefix
    assert [rep for rep, _ in order[2:]] == ["a"] * 5 + ["b"] * 5


def test_multi_conversation_adds_its_note_once_under_either_layout(both):
    for classifiers in both:
        messages = multi_conversation_messages(classifiers["intent"], [("c1", "User: hi"), ("c2", "User: bye")])
        assert sum("Batch: several conversations follow" in m["content"] for m in messages) == 1


def test_cached_tokens_are_priced_at_the_cached_input_rate():
    price = ModelPrice(prompt_per_1m=0.40, cached_input_per_1m=0.10, completion_per_1m=1.60)
    assert price.cost(1_000_000, 0) == pytest.approx(0.40)
    assert price.cost(1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(0.10)
    assert price.cost(2_000_000, 1_000_000, cached_tokens=1_000_000) == pytest.approx(0.40 + 0.10 + 1.60)
    unset = ModelPrice(prompt_per_1m=0.40, completion_per_1m=1.60)
    assert unset.cost(1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(0.40)  # no cached rate: the prompt's


def test_responses_cost_reads_cached_tokens_and_refuses_unpriced_models():
    rows = pl.DataFrame(
        {
            "model": ["m", "m", "m"],
            "prompt_tokens": [2_000_000, 1_000_000, 0],
            "completion_tokens": [0, 0, 0],
            "cached_tokens": [1_000_000, None, 0],
        },
        schema_overrides={"cached_tokens": pl.Int64},
    )
    price = ModelPrice(prompt_per_1m=1.0, cached_input_per_1m=0.25, completion_per_1m=2.0)
    assert responses_cost(rows, {"m": price}) == pytest.approx(1.0 + 0.25 + 1.0)
    with pytest.raises(ValueError, match=r"no price for models \['m'\]"):
        responses_cost(rows, {})
    assert "cached_tokens" in tables.LLM_RESPONSES


def test_usage_reads_cached_tokens_when_reported():
    class Request:
        prompt_tokens = 10

    body = {"choices": [{"message": {"content": "{}"}}], "usage": {"prompt_tokens": 2048, "completion_tokens": 5}}
    assert usage_of(Request(), body) == (2048, 5, None)
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 1024}
    assert usage_of(Request(), body) == (2048, 5, 1024)


def _digests(n_tokens: int, salt: int = 0) -> list[bytes]:
    return block_digests(prompt_sequence([("user", [salt * 100_000 + i for i in range(n_tokens)])]))


def test_prefix_cache_caches_from_1024_tokens_in_128_token_steps():
    cache = PrefixCache(ttl_s=600.0, max_entries=1000)
    short = _digests(1000)
    cache.store(short, now=0.0)
    assert cache.cached_tokens(short, now=1.0) == 0  # under 1,024 tokens nothing is cached
    long = _digests(1500)
    assert cache.cached_tokens(long, now=1.0) == 0  # never seen
    cache.store(long, now=1.0)
    assert cache.cached_tokens(long, now=2.0) == MIN_CACHED_TOKENS + 3 * CACHE_STEP_TOKENS  # 1,500 + 7 -> 1,408
    longer = _digests(2000)  # the same first 1,500 tokens, then more
    assert cache.cached_tokens(longer, now=3.0) == 1408
    assert cache.cached_tokens(_digests(2000, salt=1), now=3.0) == 0  # another prefix


def test_prefix_cache_forgets_after_its_ttl_and_evicts_the_least_recently_used():
    cache = PrefixCache(ttl_s=10.0, max_entries=1)
    first, second = _digests(1100), _digests(1100, salt=1)
    cache.store(first, now=0.0)
    assert cache.cached_tokens(first, now=20.0) == 0
    cache.store(first, now=30.0)
    cache.store(second, now=31.0)  # one entry: the first prefix goes
    assert cache.cached_tokens(first, now=32.0) == 0
    assert cache.cached_tokens(second, now=32.0) == 1024


def _chat(sim: SimulatorThread, messages: list[dict]) -> dict:
    body = json.dumps({"model": "m", "messages": messages, "max_tokens": 8}).encode()
    request = urllib.request.Request(
        f"{sim.base_url()}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["usage"]


def test_simulator_reports_a_processed_prefix_as_cached():
    long_text = " ".join(f"token{i}" for i in range(900))
    with SimulatorThread(SimConfig(endpoints=[SimEndpointConfig(name="one", model="m", latency_ms=0.0)])) as sim:
        first = _chat(sim, [{"role": "user", "content": long_text}, {"role": "system", "content": "label A"}])
        again = _chat(sim, [{"role": "user", "content": long_text}, {"role": "system", "content": "label B"}])
        short = _chat(sim, [{"role": "user", "content": "hi"}])
    assert first["prompt_tokens"] > MIN_CACHED_TOKENS
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    cached = again["prompt_tokens_details"]["cached_tokens"]
    assert cached >= MIN_CACHED_TOKENS and cached % CACHE_STEP_TOKENS == 0 and cached <= again["prompt_tokens"]
    assert short["prompt_tokens_details"]["cached_tokens"] == 0


def test_eval_configurations_name_the_layout():
    from semtel_dagster.core.evaluation.experiment import parse_config

    config, _ = parse_config("name=b,layout=conversation_first", "b")
    assert {c.layout for c in config.load().values()} == {LAYOUT_CONVERSATION_FIRST}
    with pytest.raises(ValueError, match="layout must be one of"):
        parse_config("layout=sideways", "b")
