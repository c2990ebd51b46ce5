"""Pure pieces of the cloud providers and webhooks: error classes, slots, evidence, signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from ingestd import errors
from ingestd.models import Speaker
from pipeline import webhooks
from pipeline.analyze.anthropic import quoted_in
from pipeline.provider import ProviderSlots, api_key, retryable_status
from pipeline.transcribe.base import Transcript, Utterance, speaker_for_channel


@pytest.mark.parametrize(("status", "retryable"), [
    (None, True), (408, True), (429, True), (500, True), (502, True), (503, True), (529, True),
    (400, False), (401, False), (403, False), (404, False), (413, False), (422, False),
])
def test_retryable_status(status: int | None, retryable: bool) -> None:
    assert retryable_status(status) is retryable


def test_api_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", " dg-key ")
    assert api_key("DEEPGRAM_API_KEY") == "dg-key"
    monkeypatch.setenv("DEEPGRAM_API_KEY", "")
    with pytest.raises(errors.ProviderError) as caught:
        api_key("DEEPGRAM_API_KEY")
    assert (caught.value.message, caught.value.retryable) == ("DEEPGRAM_API_KEY is not set",
                                                              False)


def test_slots_bound_calls_in_flight_per_provider() -> None:
    slots = ProviderSlots(2)
    running: dict[str, int] = {"deepgram": 0, "anthropic": 0}
    peak: dict[str, int] = {"deepgram": 0, "anthropic": 0}

    async def call(provider: str) -> None:
        async with slots.hold(provider):
            running[provider] += 1
            peak[provider] = max(peak[provider], running[provider])
            await asyncio.sleep(0.01)
            running[provider] -= 1

    async def scenario() -> None:
        await asyncio.gather(*(call(p) for p in ["deepgram"] * 6 + ["anthropic"] * 6))

    asyncio.run(scenario())
    asyncio.run(scenario())  # a second event loop gets its own semaphores
    assert peak == {"deepgram": 2, "anthropic": 2}


def test_stereo_speaker_follows_the_agent_channel() -> None:
    assert speaker_for_channel(0, 0) is Speaker.AGENT
    assert speaker_for_channel(1, 0) is Speaker.CUSTOMER
    assert speaker_for_channel(0, 1) is Speaker.CUSTOMER


TRANSCRIPT = Transcript((
    Utterance(Speaker.AGENT, 0, 0.0, 2.0, "Thank you for calling Acme!"),
    Utterance(Speaker.CUSTOMER, 1, 2.0, 4.0, "I'd like a refund, please."),
), separated=True, provider="test")


@pytest.mark.parametrize(("quote", "found"), [
    ("thank you for calling acme", True),
    ("Thank you, for calling", True),
    ("Acme! I'd like a refund", True),  # across utterances
    ("Thank you for calling ... a refund", True),  # elided
    ("Id like a refund", True),  # apostrophes dropped on both sides
    ("thank you for choosing", False),
    ("refund please sir", False),
    ("", False),
])
def test_evidence_must_occur_in_the_transcript(quote: str, found: bool) -> None:
    assert quoted_in(quote, TRANSCRIPT) is found


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"event":"call.completed","id":"dlv_1"}'
    expected = hmac.new(b"secret", body, hashlib.sha256).hexdigest()

    assert webhooks.sign("secret", body) == f"sha256={expected}"
    assert webhooks.verify("secret", body, f"sha256={expected}")
    assert not webhooks.verify("secret", body + b" ", f"sha256={expected}")
    assert not webhooks.verify("wrong", body, f"sha256={expected}")


def test_batch_delivery_ids_are_deterministic() -> None:
    first = webhooks.batch_delivery_id("whk_1", "bat_1")
    assert first == webhooks.batch_delivery_id("whk_1", "bat_1")
    assert first.startswith("dlv_") and len(first) == 20
    assert first != webhooks.batch_delivery_id("whk_2", "bat_1")
    assert first != webhooks.batch_delivery_id("whk_1", "bat_2")
