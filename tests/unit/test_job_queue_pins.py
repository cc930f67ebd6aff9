"""Queue message body behaviour no test held before (found by mutation testing spectra/job_queue.py): the two
noncharacters SQS and SNS refuse (U+FFFE, U+FFFF) are written as JSON escapes that read back as the same text, and
nothing else is touched: ASCII text, other non-ASCII characters, a lone U+FFFD."""

from __future__ import annotations

import json

import pytest

from events import JobQueuedMessage
from spectra.job_queue import message_body, sendable

pytestmark = pytest.mark.unit


def test_the_noncharacters_sqs_refuses_are_written_as_escapes_reading_back_the_same():
    """U+FFFE and U+FFFF become \\ufffe and \\uffff (six ASCII characters each) and json.loads gives the text back."""
    text = json.dumps({"sql": "a\ufffeb\uffffc"}, ensure_ascii=False)
    sent = sendable(text)
    assert sent == '{"sql": "a\\ufffeb\\uffffc"}'
    assert json.loads(sent) == {"sql": "a\ufffeb\uffffc"}


def test_other_text_is_sent_as_it_is():
    """ASCII, accented letters, U+FFFD, U+E000 and a character past U+FFFF are left as they are."""
    for text in ('{"a": "plain"}', '{"a": "é\ufffd\ue000😀"}', ""):
        assert sendable(text) == text


def test_a_message_body_is_the_models_json_with_the_refused_characters_escaped():
    """message_body of a model holding U+FFFF reads back as the model, and holds no U+FFFF itself."""
    message = JobQueuedMessage(job_id="j_\uffff", tenant_id="acmé")
    body = message_body(message)
    assert "\uffff" not in body and "acmé" in body
    assert JobQueuedMessage.model_validate_json(body) == message
