"""The CRM at scale (issue 6): one client, `bench-crm`, with 10 queues, 20 Cloud API numbers, 100 agents online, a
staff user, and as many contacts, conversations and messages as asked (100,000 and 1,000,000 by default).

    dataset = load(conversations=100_000, messages=1_000_000)

Idempotent: when the client already holds exactly that many contacts, conversations and messages, nothing is
written but the users and queues (which are cheap to ensure). Otherwise the client's contacts, conversations and
messages are deleted and loaded again with set-based SQL (INSERT … SELECT FROM generate_series), then VACUUM
ANALYZE, as autovacuum keeps a live database. Only rows of this client are ever touched.

The shape of the data:
- contacts: Peruvian mobiles +5196NNNNNNN (E.164 = identity key, wa_id = the digits; conversations/identity.py),
  Spanish names; one conversation each (so "one open conversation per number and contact" holds).
- conversations: number n % 20, queue of that number; ~10% pending (waiting, last 48 h), ~50% open and assigned
  to an agent of the queue (last 14 days; some with unread messages, 2% snoozed), ~40% resolved (last 90 days).
- messages: at least one per conversation, the rest skewed (a few conversations have 2,500 messages each, the
  others from 1 to ~40), inserted in time order across conversations as a live database receives them; inbound,
  outbound (sent, delivered, read, failed with Meta's error codes) and internal notes and notices; text in
  Spanish of varying length, images, documents, voice notes, stickers, locations and campaign templates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLIENT_SLUG = "bench-crm"
QUEUES = 10
NUMBERS = 20
AGENTS = 100
PHONE_NUMBER_ID_PREFIX = "2065406"  # other benches: 106540300…, 2065403…; never the same numbers
AGENT_USERNAME = "bench-agent-{:03d}"
AGENT_PASSWORD = "bench-crm-password"
STAFF_USERNAME = "bench-crm-staff"
LONG_MESSAGES = 2500  # messages of each of the longest conversations
LIVE_WAMID_PREFIX = "wamid.BCRMLIVE"  # inbound messages posted by the live-delivery measurement
CHUNK = 100_000  # messages per INSERT

QUEUE_NAMES = [
    "Ventas",
    "Soporte técnico",
    "Facturación",
    "Reclamos",
    "Envíos",
    "Cobranzas",
    "Postventa",
    "Mayoristas",
    "Atención VIP",
    "Devoluciones",
]
FIRST_NAMES = [
    "María", "José", "Luis", "Carmen", "Jorge", "Rosa", "Carlos", "Ana", "Juan", "Lucía", "Miguel", "Elena",
    "Pedro", "Sofía", "Diego", "Valeria", "Andrés", "Camila", "Fernando", "Daniela", "Ricardo", "Gabriela",
    "Javier", "Patricia", "Raúl", "Milagros", "César", "Claudia", "Víctor", "Fiorella",
]  # fmt: skip
LAST_NAMES = [
    "García", "Rodríguez", "Quispe", "Flores", "Sánchez", "Huamán", "Rojas", "Díaz", "Torres", "Mendoza",
    "Chávez", "Vásquez", "Ramírez", "Castillo", "Gutiérrez", "Espinoza", "Mamani", "Vargas", "Ruiz", "Salazar",
    "Romero", "Córdova", "Paredes", "Ramos", "Cruz", "Reyes", "Herrera", "Medina", "Aguilar", "Silva",
]  # fmt: skip
CUSTOMER_LINES = [
    "Hola, buenas tardes.",
    "Buenos días, quisiera información sobre el plan familiar.",
    "¿Hasta qué hora atienden hoy?",
    "Mi pedido todavía no llega, ya pasaron cinco días.",
    "Quiero solicitar un reembolso por el cobro duplicado.",
    "¿Tienen stock de la talla M en color azul?",
    "Gracias, quedo atento.",
    "Ya realicé la transferencia, les envío el comprobante.",
    "No puedo ingresar a mi cuenta, me sale error de contraseña.",
    "¿Cuál es el costo del envío a Arequipa?",
    "El producto llegó dañado, la caja estaba abierta.",
    "¿Puedo cambiar la dirección de entrega?",
    "Necesito la factura a nombre de mi empresa, RUC 20512345678.",
    "Perfecto, muchas gracias por la ayuda.",
    "¿Aceptan pago con Yape o Plin?",
    "Sigo esperando una respuesta, por favor.",
    "Quisiera cancelar mi suscripción.",
    "¿Me pueden llamar? Es urgente.",
    "Ok",
    "Sí, correcto.",
    "El técnico no vino en el horario acordado.",
    "¿Tienen tienda física en Miraflores?",
    "Me cobraron dos veces en la tarjeta.",
    "¿Cuánto demora la devolución del dinero?",
    "Buenas noches, tengo una consulta sobre mi recibo de este mes.",
    "La promoción dice 30% de descuento pero no se aplicó.",
    "Adjunto la foto del producto.",
    "¿Hacen envíos a provincia?",
    "Mi número de pedido es el que les pasé ayer.",
    "Listo, ya funciona. Gracias.",
]
AGENT_LINES = [
    "Hola, gracias por escribirnos. ¿En qué podemos ayudarte?",
    "Con gusto te ayudo. ¿Me confirmas tu número de pedido?",
    "Estamos revisando tu caso, en unos minutos te respondo.",
    "Tu pedido está en camino y llegará entre mañana y pasado.",
    "Ya registramos tu solicitud de reembolso; el abono se refleja en 5 a 7 días hábiles.",
    "Nuestro horario de atención es de lunes a sábado de 9:00 a 20:00.",
    "El costo de envío a provincia es S/ 15.00.",
    "Te envío el enlace para restablecer tu contraseña.",
    "Lamentamos mucho el inconveniente.",
    "¿Hay algo más en lo que pueda ayudarte?",
    "Sí, aceptamos Yape, Plin y tarjetas de crédito o débito.",
    "Hemos generado la factura electrónica y la enviamos a tu correo.",
    "Un asesor técnico se comunicará contigo hoy antes de las 6 p. m.",
    "Gracias por tu paciencia.",
    "Queda registrado el cambio de dirección.",
    "La promoción aplica solo para compras en la web.",
    "Te confirmo que tenemos stock disponible.",
    "Por favor, envíanos una foto del producto y del empaque.",
    "Tu caso fue derivado al área de reclamos.",
    "¡Que tengas un excelente día!",
]
NOTE_LINES = [
    "Cliente frecuente, ofrecer envío gratis.",
    "Pendiente confirmar el pago con tesorería.",
    "Escalado a supervisión.",
    "Llamar mañana por la mañana.",
    "Reclamo registrado en el libro de reclamaciones.",
]
SYSTEM_LINES = [
    "Conversación asignada automáticamente.",
    "Transferida a la cola Soporte técnico.",
    "Conversación resuelta.",
    "Conversación reabierta por un nuevo mensaje del cliente.",
]
TEMPLATE_LINES = [
    "¡Hola! Tu pedido fue despachado y llegará en 48 horas. Responde a este mensaje si tienes alguna consulta.",
    "Tenemos 20% de descuento en toda la tienda solo este fin de semana. ¿Te interesa?",
    "Recordatorio: tu cita está programada para mañana a las 10:00.",
]
CAPTIONS = ["", "", "Así llegó el producto", "Este es el comprobante", "Foto del recibo"]
FAILURES = [  # Meta's error codes for messages that could not be delivered
    ("131047", "Re-engagement message: more than 24 hours have passed since the customer last replied."),
    ("131026", "Message undeliverable."),
    ("131049", "This message was not delivered to maintain healthy ecosystem engagement."),
]

Log = Callable[[str], None]


@dataclass
class Dataset:
    client_id: int
    conversations: int
    messages: int
    loaded_seconds: float | None  # None: already there
    agent_ids: list[int] = field(default_factory=list)
    staff_id: int = 0
    queue_ids: list[int] = field(default_factory=list)
    number_ids: list[int] = field(default_factory=list)
    longest: list[tuple[int, int]] = field(default_factory=list)  # (conversation id, messages), longest first


def _h(expr: str, seed: int) -> str:
    """SQL: a deterministic pseudo-random integer in [0, 2^31) from an integer expression and a seed."""
    return f"(hashint8extended(({expr})::bigint, {seed}) & 2147483647)"


def _pick(array: str, expr: str, seed: int) -> str:
    """SQL: one element of the text[] parameter `array`, chosen by `expr`."""
    return f"(%({array})s::text[])[1 + {_h(expr, seed)} %% cardinality(%({array})s::text[])]"


def load(*, conversations: int, messages: int, log: Log = print) -> Dataset:
    """The bench-crm client with `conversations` conversations and `messages` messages, loaded unless present."""
    if messages < conversations:
        raise ValueError("every conversation has at least one message: messages >= conversations")
    from django.db import connection

    client_id, queue_ids, number_ids = _ensure_client()
    agent_ids, staff_id = _ensure_users(client_id, queue_ids)
    live_messages_delete(number_ids)
    present = _counts(client_id, number_ids)
    loaded_seconds = None
    if present != (conversations, conversations, messages):
        started = time.perf_counter()
        log(
            f"loading {conversations:,} conversations and {messages:,} messages into client {CLIENT_SLUG} "
            f"(found {present[1]:,} conversations, {present[2]:,} messages)"
        )
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            cursor.execute("SET work_mem = '256MB'")
            cursor.execute("SET maintenance_work_mem = '512MB'")
            try:
                _step(log, "delete the client's old data", lambda: _wipe(cursor, client_id, number_ids))
                _step(log, "contacts", lambda: _contacts(cursor, client_id, conversations))
                _step(
                    log,
                    "conversations",
                    lambda: _conversations(cursor, client_id, queue_ids, number_ids, agent_ids),
                )
                _messages(cursor, log, client_id, agent_ids, conversations, messages)
            finally:
                cursor.execute("RESET synchronous_commit")
                cursor.execute("RESET work_mem")
                cursor.execute("RESET maintenance_work_mem")
        _step(log, "vacuum analyze", _vacuum_analyze)
        loaded_seconds = time.perf_counter() - started
        log(f"loaded in {loaded_seconds:.1f} s")
        present = _counts(client_id, number_ids)
        if present != (conversations, conversations, messages):
            raise RuntimeError(f"the load left {present} (contacts, conversations, messages)")
    return Dataset(
        client_id=client_id,
        conversations=conversations,
        messages=messages,
        loaded_seconds=loaded_seconds,
        agent_ids=agent_ids,
        staff_id=staff_id,
        queue_ids=queue_ids,
        number_ids=number_ids,
        longest=_longest(client_id, conversations),
    )


def existing(log: Log = print) -> Dataset:
    """The data already loaded (`--skip-load`); raises LookupError when there is none."""
    from conversations.models import Conversation
    from crm.models import Client

    client = Client.objects.filter(slug=CLIENT_SLUG).first()
    if client is None or not Conversation.objects.filter(client=client).exists():
        raise LookupError(f"no {CLIENT_SLUG} data in this database: run without --skip-load first")
    client_id, queue_ids, number_ids = _ensure_client()
    agent_ids, staff_id = _ensure_users(client_id, queue_ids)
    live_messages_delete(number_ids)
    contacts, conversations, messages = _counts(client_id, number_ids)
    log(f"using the loaded data: {conversations:,} conversations, {messages:,} messages")
    return Dataset(
        client_id=client_id,
        conversations=conversations,
        messages=messages,
        loaded_seconds=None,
        agent_ids=agent_ids,
        staff_id=staff_id,
        queue_ids=queue_ids,
        number_ids=number_ids,
        longest=_longest(client_id, conversations),
    )


def live_messages_delete(number_ids: list[int]) -> int:
    """Remove the inbound messages the live-delivery measurement posted, so the counts stay as loaded."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM conversations_message WHERE number_id = ANY(%s) AND provider_message_id LIKE %s",
            [number_ids, LIVE_WAMID_PREFIX + "%"],
        )
        return cursor.rowcount


def _step(log: Log, what: str, fn: Callable[[], object]) -> object:
    started = time.perf_counter()
    rows = fn()
    shown = f"{rows:,} rows, " if isinstance(rows, int) else ""
    log(f"  {what}: {shown}{time.perf_counter() - started:.1f} s")
    return rows


def _counts(client_id: int, number_ids: list[int]) -> tuple[int, int, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM conversations_contact WHERE client_id = %(c)s), "
            "(SELECT count(*) FROM conversations_conversation WHERE client_id = %(c)s), "
            "(SELECT count(*) FROM conversations_message WHERE number_id = ANY(%(n)s))",
            {"c": client_id, "n": number_ids},
        )
        return tuple(cursor.fetchone())


def _long_count(conversations: int) -> int:
    return max(1, conversations // 20_000)


def _longest(client_id: int, conversations: int) -> list[tuple[int, int]]:
    """The long conversations (the first open ones by id) and their message counts."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.conversation_id, count(*) FROM conversations_message m WHERE m.conversation_id IN ("
            "  SELECT id FROM conversations_conversation WHERE client_id = %s AND status = 'open' "
            "  ORDER BY id LIMIT %s) "
            "GROUP BY m.conversation_id ORDER BY count(*) DESC, m.conversation_id",
            [client_id, _long_count(conversations)],
        )
        return [(row[0], row[1]) for row in cursor.fetchall()]


# --- client, queues, numbers, users (ORM: a few hundred rows) ------------------------------------------------


def _ensure_client() -> tuple[int, list[int], list[int]]:
    from crm.models import Client
    from queues.models import Queue
    from sessions.models import Engine, WhatsAppNumber
    from sessions.services import number_session_ensure

    client, _ = Client.objects.get_or_create(slug=CLIENT_SLUG, defaults={"name": "Bench CRM at scale"})
    queues = [Queue.objects.get_or_create(client=client, name=name)[0] for name in QUEUE_NAMES[:QUEUES]]
    numbers = []
    for n in range(NUMBERS):
        number, _ = WhatsAppNumber.objects.update_or_create(
            phone_number_id=f"{PHONE_NUMBER_ID_PREFIX}{n:08d}",
            defaults={
                "client": client,
                "alias": f"Línea {n + 1:02d}",
                "display_number": f"+511700{n:04d}",
                "engine": Engine.CLOUD,
                "waba_id": f"{PHONE_NUMBER_ID_PREFIX}99999999",
                "queue": queues[n % QUEUES],
                "is_active": True,
            },
        )
        number_session_ensure(number=number)
        numbers.append(number)
    return client.pk, [q.pk for q in queues], [n.pk for n in numbers]


def agent_queue_indexes(a: int) -> list[int]:
    """The queues (0-9) agent `a` works: its own (a % 10) and, for two thirds of them, one or two more."""
    indexes = [a % QUEUES]
    if a % 3 >= 1:
        indexes.append((a + 3) % QUEUES)
    if a % 3 == 2:
        indexes.append((a + 7) % QUEUES)
    return indexes


def _ensure_users(client_id: int, queue_ids: list[int]) -> tuple[list[int], int]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group

    from crm.models import ClientMembership
    from crm.roles import AGENT, STAFF
    from queues.models import AgentAvailability, QueueMembership

    User = get_user_model()
    usernames = [AGENT_USERNAME.format(a) for a in range(AGENTS)]
    have = set(User.objects.filter(username__in=[*usernames, STAFF_USERNAME]).values_list("username", flat=True))
    missing = [name for name in [*usernames, STAFF_USERNAME] if name not in have]
    if missing:
        password = make_password(AGENT_PASSWORD)  # one hash for all: they are bench users
        User.objects.bulk_create(
            [
                User(
                    username=name,
                    password=password,
                    first_name=FIRST_NAMES[i % len(FIRST_NAMES)],
                    last_name=LAST_NAMES[(i * 7) % len(LAST_NAMES)],
                    email=f"{name}@bench.example",
                    is_staff=name == STAFF_USERNAME,
                )
                for i, name in enumerate(missing)
            ]
        )
    by_name = dict(User.objects.filter(username__in=[*usernames, STAFF_USERNAME]).values_list("username", "pk"))
    agent_ids = [by_name[name] for name in usernames]
    staff_id = by_name[STAFF_USERNAME]

    ClientMembership.objects.bulk_create(
        [ClientMembership(user_id=pk, client_id=client_id) for pk in [*agent_ids, staff_id]], ignore_conflicts=True
    )
    QueueMembership.objects.bulk_create(
        [
            QueueMembership(queue_id=queue_ids[q], user_id=pk, capacity=1000)
            for a, pk in enumerate(agent_ids)
            for q in agent_queue_indexes(a)
        ],
        ignore_conflicts=True,
    )
    AgentAvailability.objects.bulk_create(
        [AgentAvailability(user_id=pk, status=AgentAvailability.Status.ONLINE) for pk in agent_ids],
        update_conflicts=True,
        unique_fields=["user"],
        update_fields=["status"],
    )
    agent_group = Group.objects.get_or_create(name=AGENT)[0]
    staff_group = Group.objects.get_or_create(name=STAFF)[0]
    agent_group.user_set.add(*agent_ids)
    staff_group.user_set.add(staff_id)
    return agent_ids, staff_id


# --- contacts, conversations, messages (set-based SQL) ---------------------------------------------------------


def _wipe(cursor, client_id: int, number_ids: list[int]) -> int:
    cursor.execute("DELETE FROM conversations_message WHERE number_id = ANY(%s)", [number_ids])
    deleted = cursor.rowcount
    cursor.execute("DELETE FROM conversations_conversation WHERE client_id = %s", [client_id])
    deleted += cursor.rowcount
    cursor.execute("DELETE FROM conversations_contact WHERE client_id = %s", [client_id])
    deleted += cursor.rowcount
    cursor.execute("DELETE FROM conversations_webhookevent WHERE client_id = %s", [client_id])
    return deleted + cursor.rowcount


def _contacts(cursor, client_id: int, count: int) -> int:
    cursor.execute(
        f"""
        INSERT INTO conversations_contact
            (created_at, updated_at, client_id, phone, identity_key, wa_id, bsuid, username, name, opted_out_at)
        SELECT t, t, %(client)s, '+5196' || lpad(g::text, 7, '0'), '+5196' || lpad(g::text, 7, '0'),
               '5196' || lpad(g::text, 7, '0'), '', '',
               {_pick("first", "g", 1)} || ' ' || {_pick("last", "g", 2)},
               CASE WHEN g %% 400 = 7 THEN t + interval '30 days' END
        FROM (SELECT g, now() - interval '400 days' + make_interval(secs => {_h("g", 3)} %% (300 * 86400)) AS t
              FROM generate_series(0, %(count)s - 1) AS g) AS s
        ORDER BY g
        """,  # noqa: S608 (only constants and hash expressions are formatted in)
        {"client": client_id, "count": count, "first": FIRST_NAMES, "last": LAST_NAMES},
    )
    return cursor.rowcount


def _conversations(cursor, client_id: int, queue_ids: list[int], number_ids: list[int], agent_ids: list[int]) -> int:
    # Conversation g: contact g, number g % 20 and its queue q; its agent (open or resolved) is q + 10 k, an agent
    # of queue q (agent_queue_indexes).
    cursor.execute(
        f"""
        INSERT INTO conversations_conversation
            (created_at, updated_at, client_id, number_id, contact_id, queue_id, assigned_to_id, status,
             waiting_since, assigned_at, resolved_at, snoozed_until, last_message_at, last_inbound_at, unread_count)
        SELECT last_at, last_at, %(client)s, (%(numbers)s::bigint[])[1 + g %% {NUMBERS}], contact_id,
               (%(queues)s::bigint[])[1 + (g %% {NUMBERS}) %% {QUEUES}],
               CASE WHEN status <> 'pending'
                    THEN (%(agents)s::int[])[1 + (g %% {NUMBERS}) %% {QUEUES} + {QUEUES} * ({_h("g", 13)} %% 10)]
               END,
               status,
               CASE WHEN status = 'pending' THEN last_at - make_interval(secs => {_h("g", 14)} %% 1800) END,
               CASE WHEN status <> 'pending' THEN last_at - make_interval(secs => {_h("g", 15)} %% 86400) END,
               CASE WHEN status = 'resolved' THEN last_at + make_interval(secs => {_h("g", 16)} %% 3600) END,
               CASE WHEN status = 'open' AND {_h("g", 17)} %% 50 = 0 THEN now() + interval '1 day' END,
               last_at, last_at,
               CASE WHEN status = 'pending' THEN 1 + {_h("g", 18)} %% 3
                    WHEN status = 'open' AND {_h("g", 18)} %% 10 < 3 THEN 1 + {_h("g", 19)} %% 5
                    ELSE 0 END
        FROM (
            SELECT g, contact_id, status,
                   now() - make_interval(secs => {_h("g", 12)} %% (CASE status WHEN 'pending' THEN 2 * 86400
                                                                       WHEN 'open' THEN 14 * 86400
                                                                       ELSE 90 * 86400 END)) AS last_at
            FROM (
                SELECT row_number() OVER (ORDER BY id) - 1 AS g, id AS contact_id
                FROM conversations_contact WHERE client_id = %(client)s
            ) AS c
            CROSS JOIN LATERAL (
                SELECT CASE WHEN {_h("g", 11)} %% 100 < 10 THEN 'pending'
                            WHEN {_h("g", 11)} %% 100 < 60 THEN 'open'
                            ELSE 'resolved' END AS status
            ) AS s
        ) AS conv
        ORDER BY g
        """,  # noqa: S608 (only constants and hash expressions are formatted in)
        {"client": client_id, "numbers": number_ids, "queues": queue_ids, "agents": agent_ids},
    )
    return cursor.rowcount


def _messages(cursor, log: Log, client_id: int, agent_ids: list[int], conversations: int, messages: int) -> None:
    long_count = _long_count(conversations)
    long_messages = min(LONG_MESSAGES, (messages - conversations) // (4 * long_count) + 1)
    extra = messages - conversations - long_count * (long_messages - 1)  # beyond one per conversation
    rest = conversations - long_count

    def skeleton() -> int:
        # One row per message to be: its conversation, position k of n, time and direction. Counts: the longest
        # conversations get `long_messages`; the others 1 + a share of `extra` that grows as r^4 over their rank r
        # in a shuffled order (floor differences of a CDF: the shares add up to `extra` exactly).
        cursor.execute("DROP TABLE IF EXISTS bench_crm_skeleton")
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE bench_crm_skeleton AS
            WITH conv AS (
                SELECT c.id, c.number_id, c.status, c.assigned_to_id, c.unread_count, c.last_message_at,
                       ct.wa_id, c.id IN (SELECT id FROM conversations_conversation
                                          WHERE client_id = %(client)s AND status = 'open'
                                          ORDER BY id LIMIT %(long_count)s) AS long
                FROM conversations_conversation c JOIN conversations_contact ct ON ct.id = c.contact_id
                WHERE c.client_id = %(client)s
            ),
            ranked AS (
                SELECT conv.*, row_number() OVER (ORDER BY long, {_h("id", 21)}, id) - 1 AS r FROM conv
            ),
            counted AS (
                SELECT ranked.*,
                       CASE WHEN long THEN %(long_messages)s
                            ELSE 1 + floor(power((r + 1)::float8 / %(rest)s, 4) * %(extra)s)::int
                                   - floor(power(r::float8 / %(rest)s, 4) * %(extra)s)::int
                       END AS n,
                       CASE WHEN long THEN 1800 ELSE 120 + {_h("id", 22)} %% 10800 END AS gap
                FROM ranked
            )
            SELECT id AS conversation_id, number_id, status AS conv_status, assigned_to_id, wa_id, k, n,
                   last_message_at - make_interval(secs => (n - k) * gap
                       + CASE WHEN k = n THEN 0 ELSE {_h("id * 8192 + k", 23)} %% (gap / 2) END) AS created_at,
                   CASE WHEN k = 1 THEN 'in'
                        WHEN k = n AND (status = 'pending' OR unread_count > 0) THEN 'in'
                        WHEN k = n THEN 'out'
                        WHEN {_h("id * 8192 + k", 24)} %% 100 < 3 THEN 'int'
                        WHEN {_h("id * 8192 + k", 24)} %% 100 < 52 THEN 'in'
                        ELSE 'out' END AS direction
            FROM counted CROSS JOIN LATERAL generate_series(1, n) AS k
            """,  # noqa: S608
            {
                "client": client_id,
                "long_count": long_count,
                "long_messages": long_messages,
                "rest": max(rest, 1),
                "extra": extra,
            },
        )
        count = cursor.rowcount
        cursor.execute(
            "CREATE TEMPORARY TABLE bench_crm_sequence AS "
            "SELECT s.*, row_number() OVER (ORDER BY created_at, conversation_id, k) AS seq FROM bench_crm_skeleton s"
        )
        cursor.execute("DROP TABLE bench_crm_skeleton")
        cursor.execute("ALTER TABLE bench_crm_sequence RENAME TO bench_crm_skeleton")
        cursor.execute("CREATE INDEX ON bench_crm_skeleton (seq)")
        cursor.execute("ANALYZE bench_crm_skeleton")
        return count

    total = _step(log, f"message plan ({long_count} conversations of {long_messages:,} messages)", skeleton)
    if total != messages:
        raise RuntimeError(f"planned {total} messages, not {messages}")
    started = time.perf_counter()
    for first in range(0, total, CHUNK):
        _insert_messages(cursor, agent_ids, first, min(first + CHUNK, total))
        done = min(first + CHUNK, total)
        log(f"  messages: {done:,} of {total:,} rows, {time.perf_counter() - started:.1f} s")
    _step(log, "conversation times from their messages", lambda: _conversation_times(cursor))
    cursor.execute("DROP TABLE bench_crm_skeleton")


def _insert_messages(cursor, agent_ids: list[int], first: int, last: int) -> None:
    x = "seq"
    kind_pick = _h(x, 31) + " %% 100"
    cursor.execute(
        f"""
        INSERT INTO conversations_message
            (created_at, updated_at, conversation_id, number_id, direction, origin, kind, body, provider_message_id,
             status, error_code, error_reason, status_at, payload, provider_timestamp, media_id, media_mime_type,
             media_filename, quoted_id, quoted_provider_message_id, sent_by_id)
        SELECT created_at, created_at + make_interval(secs => status_delay), conversation_id, number_id, direction,
               origin, kind, body, wamid, status,
               CASE WHEN status = 'failed' THEN (%(failures)s::text[])[1 + failure] ELSE '' END,
               CASE WHEN status = 'failed' THEN (%(reasons)s::text[])[1 + failure] ELSE '' END,
               created_at + make_interval(secs => status_delay),
               CASE WHEN direction = 'in' THEN jsonb_build_object(
                        'from', wa_id, 'id', wamid, 'timestamp', extract(epoch FROM created_at)::bigint::text,
                        'type', kind, kind,
                        CASE WHEN kind = 'text' THEN jsonb_build_object('body', body)
                             WHEN media_id <> '' THEN jsonb_build_object('id', media_id, 'mime_type', mime)
                             ELSE '{{}}'::jsonb END)
                    ELSE '{{}}'::jsonb END,
               CASE WHEN direction = 'in' THEN created_at END,
               media_id, mime, filename, NULL, '',
               CASE WHEN origin = 'agent' OR (direction = 'int' AND origin = 'system' AND seq %% 2 = 0)
                    THEN coalesce(assigned_to_id, (%(agents)s::int[])[1 + {_h(x, 32)} %% {AGENTS}]) END
        FROM (
            SELECT m.*, kinds.kind, kinds.origin,
                   CASE WHEN direction = 'int' THEN NULL
                        ELSE 'wamid.HBgLNT' || upper(md5(seq::text)) END AS wamid,
                   CASE WHEN direction <> 'out' THEN 'received'
                        WHEN {_h(x, 33)} %% 100 < 3 THEN 'failed'
                        WHEN {_h(x, 33)} %% 100 < 15 THEN 'sent'
                        WHEN {_h(x, 33)} %% 100 < 40 THEN 'delivered'
                        ELSE 'read' END AS status,
                   {_h(x, 34)} %% 3 AS failure,
                   CASE WHEN direction = 'out' THEN 1 + {_h(x, 35)} %% 600 ELSE 0 END AS status_delay,
                   CASE WHEN kinds.kind IN ('image', 'document', 'voice', 'audio', 'sticker', 'video')
                        THEN (1000000000000000 + {_h(x, 36)})::text ELSE '' END AS media_id,
                   CASE kinds.kind WHEN 'image' THEN 'image/jpeg' WHEN 'document' THEN 'application/pdf'
                        WHEN 'voice' THEN 'audio/ogg; codecs=opus' WHEN 'audio' THEN 'audio/mpeg'
                        WHEN 'sticker' THEN 'image/webp' WHEN 'video' THEN 'video/mp4' ELSE '' END AS mime,
                   CASE WHEN kinds.kind = 'document' THEN 'comprobante-' || seq || '.pdf' ELSE '' END AS filename,
                   CASE kinds.kind
                        WHEN 'note' THEN {_pick("notes", x, 37)}
                        WHEN 'system' THEN {_pick("system", x, 37)}
                        WHEN 'template' THEN {_pick("templates", x, 37)}
                        WHEN 'location' THEN 'Av. José Larco ' || (100 + {_h(x, 38)} %% 900) || ', Miraflores'
                        WHEN 'image' THEN {_pick("captions", x, 38)}
                        WHEN 'video' THEN {_pick("captions", x, 38)}
                        WHEN 'text' THEN
                            CASE WHEN direction = 'in' THEN {_pick("customer", x, 39)} ELSE {_pick("agent", x, 39)} END
                            || CASE WHEN {_h(x, 40)} %% 10 >= 5 THEN ' ' || CASE WHEN direction = 'in'
                                    THEN {_pick("customer", x, 41)} ELSE {_pick("agent", x, 41)} END ELSE '' END
                            || CASE WHEN {_h(x, 40)} %% 10 >= 8 THEN ' ' || CASE WHEN direction = 'in'
                                    THEN {_pick("customer", x, 42)} ELSE {_pick("agent", x, 42)} END ELSE '' END
                            || CASE WHEN {_h(x, 40)} %% 10 >= 9 THEN ' ' || CASE WHEN direction = 'in'
                                    THEN {_pick("customer", x, 43)} || ' ' || {_pick("customer", x, 44)}
                                    ELSE {_pick("agent", x, 43)} || ' ' || {_pick("agent", x, 44)} END ELSE '' END
                            || CASE WHEN direction = 'in' AND {_h(x, 45)} %% 10 = 0
                                    THEN ' Pedido ' || (100000 + {_h(x, 46)} %% 900000) ELSE '' END
                        ELSE '' END AS body
            FROM bench_crm_skeleton m
            CROSS JOIN LATERAL (
                SELECT CASE WHEN m.direction = 'int' THEN CASE WHEN {_h(x, 30)} %% 3 = 0 THEN 'note' ELSE 'system' END
                            WHEN m.direction = 'out' AND {_h(x, 30)} %% 100 < 5 THEN 'template'
                            WHEN {kind_pick} < 88 THEN 'text'
                            WHEN {kind_pick} < 93 THEN 'image'
                            WHEN {kind_pick} < 95 THEN 'document'
                            WHEN {kind_pick} < 97 THEN CASE WHEN m.direction = 'in' THEN 'voice' ELSE 'audio' END
                            WHEN {kind_pick} < 98 THEN 'sticker'
                            WHEN {kind_pick} < 99 THEN 'location'
                            ELSE 'video' END AS kind,
                       CASE WHEN m.direction = 'in' THEN ''
                            WHEN m.direction = 'int' THEN
                                CASE WHEN {_h(x, 30)} %% 3 = 0 THEN 'agent' ELSE 'system' END
                            WHEN {_h(x, 30)} %% 100 < 5 THEN 'campaign'
                            WHEN {_h(x, 30)} %% 100 < 8 THEN 'ai'
                            ELSE 'agent' END AS origin
            ) AS kinds
            WHERE m.seq > %(first)s AND m.seq <= %(last)s
        ) AS planned
        ORDER BY seq
        """,  # noqa: S608
        {
            "first": first,
            "last": last,
            "agents": agent_ids,
            "failures": [code for code, _ in FAILURES],
            "reasons": [reason for _, reason in FAILURES],
            "customer": CUSTOMER_LINES,
            "agent": AGENT_LINES,
            "notes": NOTE_LINES,
            "system": SYSTEM_LINES,
            "templates": TEMPLATE_LINES,
            "captions": CAPTIONS,
        },
    )


def _conversation_times(cursor) -> int:
    cursor.execute(
        """
        UPDATE conversations_conversation c
        SET created_at = s.first_at, last_message_at = s.last_at, last_inbound_at = s.last_in,
            assigned_at = CASE WHEN c.assigned_at IS NOT NULL THEN greatest(c.assigned_at, s.first_at) END,
            waiting_since = CASE WHEN c.waiting_since IS NOT NULL THEN greatest(c.waiting_since, s.first_at) END
        FROM (SELECT conversation_id, min(created_at) AS first_at, max(created_at) AS last_at,
                     max(created_at) FILTER (WHERE direction = 'in') AS last_in
              FROM bench_crm_skeleton GROUP BY conversation_id) AS s
        WHERE c.id = s.conversation_id
        """
    )
    return cursor.rowcount


def _vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("conversations_contact", "conversations_conversation", "conversations_message"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
