"""A real tritonserver on this machine, without Docker: the binary inside the `nvidia-pytriton` wheel.

That build carries only the Python backend, starts on the CPU, and serves repositories written with
`--layout python`. Install the wheel's files apart from everything else (it pins numpy < 2):
`pip install --no-deps --target ENV/tritonserver nvidia-pytriton==0.7.0` into the serving environment ENV
(`make triton-env` does it), or anywhere else and point LTDEPLOY_TRITONSERVER at that folder.

Two things must match for the Python-backend stub (the process that runs model.py):
- its Python environment is the one whose `python3` comes first on PATH: it needs ltdeploy, and numpy < 2
  (the stub's numpy bindings are built against numpy 1; with numpy 2 every output fails with
  "output tensor shape does not match size of output");
- its libpython must be the same build as that environment's standard library. The stub links
  `libpython3.X.so`; if the loader finds a different 3.X build (here Debian's 3.11.2 beside a pyenv
  3.11.7 environment), the newer threading.py meets the older _thread module and fails with
  `'_thread.RLock' object has no attribute '_recursion_count'`. So the interpreter's own LIBDIR goes
  first on LD_LIBRARY_PATH.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

from ltdeploy.errors import EngineError

ENV_VAR = "LTDEPLOY_TRITONSERVER"


def server_files(root: str | None = None, python: str | None = None) -> str:
    """The folder holding `pytriton/tritonserver` and `nvidia_pytriton.libs` (from a --target install):
    `root`, else $LTDEPLOY_TRITONSERVER, else `tritonserver/` in the environment of `python`."""
    env_root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(python))), "tritonserver") if python else ""
    root = root or os.environ.get(ENV_VAR, "") or env_root
    if not root or not os.path.isfile(os.path.join(root, "pytriton", "tritonserver", "bin", "tritonserver")):
        raise EngineError(f"no tritonserver found (set {ENV_VAR} to a folder made by "
                          "`pip install --no-deps --target DIR nvidia-pytriton==0.7.0`)")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python_info(python: str) -> dict:
    probe = ("import json, sys, sysconfig; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
             "'libdir': sysconfig.get_config_var('LIBDIR') or ''}))")
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


class LocalTriton:
    """`with LocalTriton(repo, python) as server:` serves `repo` on free loopback ports until the block ends."""

    def __init__(self, repo: str, python: str, root: str | None = None, startup_timeout: float = 120.0) -> None:
        self.repo, self.python, self.root = os.path.abspath(repo), python, server_files(root, python)
        self.timeout = startup_timeout
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.process: subprocess.Popen | None = None
        self.workdir = ""
        self.log_path = ""

    @property
    def url(self) -> str:
        """host:port of the HTTP endpoint, as tritonclient.http wants it."""
        return f"127.0.0.1:{self.http_port}"

    def _prepare(self) -> tuple[str, dict]:
        info = _python_info(self.python)
        src = os.path.join(self.root, "pytriton", "tritonserver")
        stub = os.path.join(src, "python_backend_stubs", info["version"], "triton_python_backend_stub")
        if not os.path.isfile(stub):
            raise EngineError(f"the tritonserver in {self.root} has no Python-backend stub for Python {info['version']}")
        self.workdir = tempfile.mkdtemp(prefix="ltdeploy-triton-")
        server = os.path.join(self.workdir, "tritonserver")
        shutil.copytree(src, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
        shutil.copy2(stub, os.path.join(server, "backends", "python", "triton_python_backend_stub"))
        env = dict(os.environ)
        libs = [info["libdir"], os.path.join(self.root, "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in libs if p)
        env["PATH"] = os.path.dirname(self.python) + os.pathsep + env.get("PATH", "")
        return server, env

    def __enter__(self) -> "LocalTriton":
        server, env = self._prepare()
        self.http_port, self.grpc_port, self.metrics_port = _free_port(), _free_port(), _free_port()
        self.log_path = os.path.join(self.workdir, "tritonserver.log")
        # An open client connection counts as in flight, and at shutdown the server waits --exit-timeout-secs
        # (30 by default) for it; a local server stopped by its owner has nothing left worth waiting for.
        cmd = [os.path.join(server, "bin", "tritonserver"), f"--model-repository={self.repo}",
               f"--backend-directory={os.path.join(server, 'backends')}", "--http-address=127.0.0.1",
               "--grpc-address=127.0.0.1", f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
               f"--metrics-port={self.metrics_port}", "--allow-metrics=false", "--exit-on-error=true",
               "--strict-readiness=true", "--exit-timeout-secs=3"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"tritonserver exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self._fail(f"tritonserver was not ready after {self.timeout:.0f} s")
        return self

    def _fail(self, what: str) -> None:
        reason = self.last_error()
        self.__exit__()
        raise EngineError(f"{what}: {reason}")

    def last_error(self) -> str:
        """The most telling line of the server log (an error if there is one)."""
        try:
            with open(self.log_path) as f:
                lines = [ln.strip() for ln in f if ln.strip()]
        except OSError:
            return "no log"
        errors = [ln for ln in lines if "error" in ln.lower() or "UNAVAILABLE" in ln]
        return (errors or lines or ["empty log"])[-1][:400]

    def log(self) -> str:
        """The whole server log."""
        with open(self.log_path) as f:
            return f.read()

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __exit__(self, *exc) -> None:
        self._stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
