"""The floor: a bare Starlette WebSocket relay to the model over aiohttp, nothing stored.

It speaks hearth's frame protocol (ack, deltas, done) so the same load generator drives both, and is
served by the same server (Hypercorn on uvloop), so the difference to hearth is hearth's own work.
"""

import sys, uuid, aiohttp, orjson, uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

MODEL = sys.argv[1] + "/api/chat"
session: aiohttp.ClientSession | None = None


async def relay(ws):
    global session
    session = session or aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    await ws.accept()
    while True:
        msg = orjson.loads(await ws.receive_text())
        mid, text = msg["id"], []
        await ws.send_text(orjson.dumps({"type": "ack", "id": mid, "conversation": uuid.uuid4().hex}).decode())
        body = {"model": "llama3.2", "stream": True, "messages": [{"role": "user", "content": msg["text"]}]}
        async with session.post(MODEL, data=orjson.dumps(body)) as resp:
            async for line in resp.content:
                chunk = orjson.loads(line)
                if chunk.get("done"):
                    break
                text.append(chunk["message"]["content"])
                await ws.send_text(orjson.dumps({"type": "delta", "id": mid, "text": text[-1]}).decode())
        await ws.send_text(orjson.dumps({"type": "done", "id": mid, "text": "".join(text)}).decode())


if __name__ == "__main__":
    config = Config()
    config.bind = [f"127.0.0.1:{sys.argv[2]}"]
    config.accesslog, config.websocket_ping_interval = None, None
    uvloop.run(serve(Starlette(routes=[WebSocketRoute("/ws", relay)]), config))
