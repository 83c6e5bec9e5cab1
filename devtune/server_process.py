"""Start the real cloud server in a child process on 127.0.0.1 and stop it again.

Normally ``python -m cloud_server`` of this tree. For side-by-side benchmarks it can run
another tree's server instead (``src``: a git worktree of an older commit, whose
``cloud_server`` is imported first), and on uvicorn's plain stack (``stack="h11"``: the
asyncio loop and the h11 parser, what an install without uvloop and httptools gets).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import httpx

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ServerProcess", "Stack", "free_port"]

Stack = Literal["auto", "h11"]
"""uvicorn's pick (uvloop and httptools when installed), or the asyncio loop and h11."""

# The app under uvicorn with the stack named, for a tree whose own entry point cannot be
# told which (an older commit's); settings come from the DEVTUNE_CLOUD_* variables.
_RUNNER = """
import sys, uvicorn
from cloud_server.app import create_app
from cloud_server.settings import CloudSettings
settings = CloudSettings()
loop, http = sys.argv[1:3]
uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop=loop, http=http,
            log_level=settings.log_level, log_config=None, access_log=False, timeout_graceful_shutdown=30)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`python -m cloud_server` with DEVTUNE_CLOUD_* settings; waits for /readyz.

    ``src``: the source tree whose server runs (default: this one, as installed);
    ``stack``: "h11" runs it on the asyncio loop and the h11 parser instead of uvicorn's pick.
    """

    def __init__(self, bundle: str | Path | None = None, port: int | None = None, *, src: str | Path | None = None,
                 stack: Stack = "auto", **settings: object) -> None:
        if stack not in ("auto", "h11"):
            raise ValueError(f"stack must be 'auto' or 'h11', not {stack!r}")
        if src is not None and not (Path(src) / "cloud_server" / "__init__.py").is_file():
            raise ValueError(f"{src} holds no cloud_server package; pass the root of a source tree "
                             "(e.g. one made with `git worktree add DIR COMMIT`)")
        self.src = Path(src).resolve() if src is not None else None
        self.stack = stack
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update({"DEVTUNE_CLOUD_HOST": "127.0.0.1", "DEVTUNE_CLOUD_PORT": str(self.port)})
        if bundle is not None:
            env["DEVTUNE_CLOUD_BUNDLE"] = str(Path(bundle).resolve())  # the child may run elsewhere (src)
        env.update({f"DEVTUNE_CLOUD_{k.upper()}": str(v) for k, v in settings.items()})
        env.setdefault("DEVTUNE_CLOUD_LOG_LEVEL", "warning")
        if self.src is not None:  # its packages before the installed ones
            env["PYTHONPATH"] = os.pathsep.join([str(self.src), *filter(None, [env.get("PYTHONPATH")])])
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Self:
        if self.src is None and self.stack == "auto":
            command = [sys.executable, "-m", "cloud_server"]
        else:
            loop, http = ("asyncio", "h11") if self.stack == "h11" else ("auto", "auto")
            command = [sys.executable, "-c", _RUNNER, loop, http]
        # From the source tree when there is one, so that nothing of this one shadows it.
        self.process = subprocess.Popen(command, env=self.env, cwd=self.src)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"the server exited with code {code} before it was ready")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
