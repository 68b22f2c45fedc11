"""A timing fake of the Graph API messages endpoint for benchmarks, in its own process.

The test suite's FakeGraphApi (tests/fakes/graph_api.py) answers every request on its own thread: fine for
behaviour, but under hundreds of requests a second its threads queue for the interpreter lock and the arrival
times it notes bunch up by tens of milliseconds, which is the very thing a rate benchmark measures. This one is a
single asyncio loop in a separate process: it notes each request's arrival the moment its bytes are read, answers
like Meta (`{"messaging_product", "contacts", "messages": [{"id": "wamid…"}]}`; 401 for a wrong token), and writes
every arrival as a `phone_number_id,to,time.time()` line to `--out`: every 0.2 s while it runs (so what the
provider received can be read meanwhile, as make chaos does) and at SIGTERM, which stops it. Never in the
handler: a write there delays reading the next request, and the arrival times it notes would bunch up.

    python bench/_graph_timer.py --port 8123 --token EAAG... --out arrivals.csv
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
import uuid


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str, arrivals: list) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            arrived = time.time()
            parts = path.strip("/").split("/")
            if method != "POST" or len(parts) != 3 or parts[2] != "messages":
                status, reply = 404, {"error": {"message": f"Unknown path {path}", "code": 100}}
            elif headers.get("authorization") != f"Bearer {token}":
                status, reply = 401, {"error": {"message": "Invalid OAuth access token.", "code": 190}}
            else:
                to = str(json.loads(body).get("to", ""))
                arrivals.append(f"{parts[1]},{to},{arrived:.6f}\n")
                status = 200
                reply = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": "wamid." + uuid.uuid4().hex.upper()}],
                }
            raw = json.dumps(reply).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
                + raw
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    arrivals: list[str] = []
    with open(args.out, "a") as out:

        def flush() -> None:
            lines = arrivals[:]
            del arrivals[: len(lines)]
            out.writelines(lines)
            out.flush()

        async def flusher() -> None:
            while True:
                await asyncio.sleep(0.2)
                flush()

        server = await asyncio.start_server(
            lambda r, w: handle(r, w, args.token, arrivals), "127.0.0.1", args.port, backlog=512
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        background = asyncio.create_task(flusher())
        async with server:
            await stop.wait()
        background.cancel()
        flush()


if __name__ == "__main__":
    asyncio.run(main())
