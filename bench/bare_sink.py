"""The baseline for bench/ingest_acks.py: a bare aiohttp WebSocket server that answers every
binary message at once with an ack of the same shape as voxbus's, and does nothing else."""

import json
import sys

from aiohttp import WSMsgType, web


async def sink(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    count = 0
    await ws.send_str(
        json.dumps({"message": "Audio session created", "session_id": "bare", "chunk_count": 0})
    )
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            count += 1
            await ws.send_str(
                json.dumps(
                    {
                        "message": "Chunk processed successfully",
                        "session_id": "bare",
                        "chunk_count": count,
                        "status": "active",
                    }
                )
            )
    return ws


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/api/ws/audio", sink)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
