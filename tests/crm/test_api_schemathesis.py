"""The REST API against its own OpenAPI schema, running (daphne on the test database): Schemathesis generates
requests for every operation from the schema, valid and invalid, with an admin token and some data to find,
and checks that nothing answers 5xx and that every answer (status, content type, body) is what the schema
says. A bounded run: a few examples per operation and a time budget, so CI stays fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.models import Campaign
from conversations.models import Conversation
from crm.models import ApiToken
from tests.conftest import ROOT, free_port, project_env, stop_processes
from tests.conversations.factories import ContactFactory, ConversationFactory, MessageFactory
from tests.crm.api_helpers import token_for
from tests.e2e.conftest import _wait_http
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)

BIN = Path(sys.executable).parent
MAX_EXAMPLES = 8
MAX_SECONDS = 40


@pytest.mark.timeout(MAX_SECONDS + 180)
def test_the_running_api_answers_as_its_schema_says_and_never_5xx(default_client, tmp_path):
    # given some data of the token's client to find, and the API running
    queue = QueueFactory(client=default_client, name="Ventas")
    number = WhatsAppNumberFactory(client=default_client, queue=queue, alias="Linea 1")
    for n in range(3):
        conversation = ConversationFactory(
            client=default_client,
            number=number,
            queue=queue,
            contact=ContactFactory(client=default_client, name=f"Cliente {n}"),
            status=Conversation.Status.PENDING,
        )
        MessageFactory(conversation=conversation, body=f"hola {n}", provider_message_id=f"wamid.st{n}")
    campaign = Campaign.objects.create(client=default_client, number=number, name="Promo", message="Hola {{nombre}}")
    _token, key = token_for(default_client, ApiToken.Scope.ADMIN, name="schemathesis")
    # Real ids for the operations on one object, so the generated requests reach their logic, not only 404s.
    ids = {
        "conversations": conversation.pk,
        "numbers": number.pk,
        "contacts": conversation.contact_id,
        "campaigns": campaign.pk,
        "queues": queue.pk,
    }
    (tmp_path / "schemathesis.toml").write_text(
        "".join(
            f"[[operations]]\ninclude-path-regex = '^/api/v1/{kind}/\\{{id\\}}/'\nparameters = {{ id = {pk} }}\n\n"
            for kind, pk in ids.items()
        )
    )
    port = free_port()
    env = project_env(APP_COMPONENT="web", API_RATE_LIMIT="100000/min", LOG_LEVEL="ERROR")
    web = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/v1/schema/")

        # when Schemathesis exercises every operation
        run = subprocess.run(
            [str(BIN / "st"), "run", f"http://127.0.0.1:{port}/api/v1/schema/"]
            + ["--header", f"Authorization: Bearer {key}"]
            + ["--checks", "not_a_server_error,status_code_conformance,content_type_conformance"]
            + ["--checks", "response_schema_conformance"]
            + ["--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_SECONDS)]
            + ["--phases", "examples,coverage,fuzzing", "--workers", "2", "--seed", "7"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=MAX_SECONDS + 120,
        )
    finally:
        stop_processes([web])

    # then it found nothing
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
