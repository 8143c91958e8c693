"""The baseline of bench_gateway: a bare FastAPI hello-world, served the way `mlplane up` serves
the platform (uvicorn.run, one worker, the same log level and graceful shutdown).

    python bench/hello_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/spaces")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info", timeout_graceful_shutdown=10
    )
