"""The fork server and its kernel manager, with real kernels and real papermill runs.

One server (preloading numpy) serves the whole module; each test asks it for fresh
kernels. The robustness test starts 200 kernels four at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import AsyncKernelManager
from nbbuild import notebook_node
from nbclient.exceptions import DeadKernelError

from nbprod.execution.forkserver.handle import ForkServer, fork_kernel_manager
from nbprod.execution.forkserver.manager import ForkKernelManager
from nbprod.execution.forkserver.protocol import encode, import_time_env, take_messages
from nbprod.execution.kernels import CurrentPythonKernelManager

# What a kernel reveals about how it was started: all of it must match a normal kernel's.
STATE_CELL = """
import os, signal, sys
print(os.getcwd())
print(sys.path)
print(sys.argv[1:2], __name__, sys.stdin.read())
print(sorted(set(os.environ) - {"JPY_PARENT_PID"}))
print([str(signal.getsignal(s)) for s in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE)])
"""


# -- the protocol, without processes ---------------------------------------------------------


def test_messages_are_json_lines_read_whole() -> None:
    buffer = bytearray(encode({"pid": 1}) + encode({"exit": 0}) + b'{"sig')
    assert take_messages(buffer) == [{"pid": 1}, {"exit": 0}]
    assert buffer == bytearray(b'{"sig')


def test_import_time_variables_exclude_thread_counts() -> None:
    env = {"PYTHONPATH": "x", "OMP_NUM_THREADS": "4", "OMP_PROC_BIND": "true", "HOME": "/"}
    assert import_time_env(env) == {"PYTHONPATH": "x", "OMP_PROC_BIND": "true"}


# -- real kernels -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ForkServer]:
    with ForkServer(["numpy", "no_such_module_here"]) as running:
        yield running


def test_server_reports_its_imports(server: ForkServer) -> None:
    assert server.imported == ["numpy"]
    assert "no_such_module_here" in server.failed
    assert server.threads == 1


def _run(
    tmp_path: Path, name: str, manager: type[AsyncKernelManager], *cells: str, **params: Any
) -> nbformat.NotebookNode:
    """Execute a notebook of ``cells`` (the first is the parameters cell) with papermill."""
    import papermill

    source = tmp_path / f"{name}.ipynb"
    source.write_text(
        json.dumps(notebook_node(("parameters", cells[0]), *((None, c) for c in cells[1:])))
    )
    output = tmp_path / f"{name}.out.ipynb"
    papermill.execute_notebook(
        str(source),
        str(output),
        parameters=params or None,
        kernel_name="python3",
        kernel_manager_class=manager,
        cwd=str(tmp_path),
        progress_bar=False,
    )
    return nbformat.read(str(output), as_version=4)


def _outputs(executed: nbformat.NotebookNode) -> list[list[dict[str, Any]]]:
    """The cells' outputs without what varies between any two runs."""
    kept = []
    for cell in executed.cells:
        if cell.cell_type == "code":
            kept.append([{k: v for k, v in out.items() if k != "metadata"} for out in cell.outputs])
    return kept


@pytest.mark.slow
def test_forked_kernel_gives_the_outputs_of_a_normal_kernel(
    server: ForkServer, tmp_path: Path
) -> None:
    cells = (
        "C = 1.0",
        "import numpy as np\nx = np.arange(6).reshape(2, 3) * C\nprint(x.sum())\nx",
        "import sys\nsys.stderr.write('to stderr\\n')\nfrom IPython.display import HTML\n"
        "HTML('<b>hi</b>')",
        STATE_CELL,
    )
    manager = server.manager_class()
    forked = _run(tmp_path, "forked", manager, *cells, C=2.0)
    assert manager.started_by == "fork"
    normal = _run(tmp_path, "normal", CurrentPythonKernelManager, *cells, C=2.0)
    assert _outputs(forked) == _outputs(normal)
    assert "30.0" in forked.cells[2].outputs[0]["text"]


@pytest.mark.slow
def test_runs_are_isolated_and_draw_different_random_numbers(
    server: ForkServer, tmp_path: Path
) -> None:
    cells = (
        "tag = 'x'",
        "import numpy\nprint(hasattr(numpy, 'leaked'), 'leaked' in globals())\n"
        "numpy.leaked = leaked = 1\nprint(numpy.random.rand())",
    )
    texts = []
    for run in range(3):
        manager = server.manager_class()
        executed = _run(tmp_path, f"run{run}", manager, *cells)
        assert manager.started_by == "fork"
        texts.append(executed.cells[1].outputs[0]["text"])
    assert all(text.startswith("False False\n") for text in texts)
    assert len(set(texts)) == 3  # numpy's global generator was reseeded in each kernel


@pytest.mark.slow
def test_falls_back_to_a_normal_kernel_when_the_server_is_unreachable(tmp_path: Path) -> None:
    manager = fork_kernel_manager(str(tmp_path / "no-server.sock"))
    executed = _run(tmp_path, "fallback", manager, "C = 1", "print(C + 1)")
    assert executed.cells[1].outputs[0]["text"] == "2\n"
    assert manager.started_by is not None
    assert manager.started_by.startswith("fallback: the fork server is unreachable")


async def _start(manager: type[AsyncKernelManager], cwd: Path, timeout: float = 60) -> Any:
    km = manager()
    await asyncio.wait_for(km.start_kernel(cwd=str(cwd)), timeout)
    return km


async def _kernel_info(km: Any, timeout: float = 30) -> dict[str, Any]:
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=timeout)
        reply: dict[str, Any] = await client.kernel_info(reply=True, timeout=timeout)
    finally:
        client.stop_channels()
    return reply


async def _refusal(manager: type[ForkKernelManager], cwd: Path) -> str | None:
    km = await _start(manager, cwd)
    try:
        await _kernel_info(km)
    finally:
        await km.shutdown_kernel(now=True)
    return km.started_by


@pytest.mark.slow
def test_refused_requests_fall_back_and_say_why(
    server: ForkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "numpy.py").write_text("")  # would shadow the server's numpy in a kernel
    started_by = asyncio.run(_refusal(server.manager_class(), tmp_path))
    assert started_by is not None
    assert "has its own `numpy`" in started_by

    monkeypatch.setenv("PYTHONNBPRODTEST", "1")  # read at import time: cannot be forked
    started_by = asyncio.run(_refusal(server.manager_class(), tmp_path.parent))
    assert started_by is not None
    assert "$PYTHONNBPRODTEST differs" in started_by


def _ask(server: ForkServer, request: bytes, timeout: float = 30) -> dict[str, Any]:
    """Send one raw request to the server; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(server.socket_path)
        sock.sendall(request)
        buffer = bytearray()
        while not (messages := take_messages(buffer)):
            data = sock.recv(65536)
            if not data:
                return {}
            buffer += data
    return messages[0]


@pytest.mark.slow
def test_the_server_refuses_or_reports_what_it_cannot_start(
    server: ForkServer, tmp_path: Path
) -> None:
    connection_file, _ = write_connection_file(
        str(tmp_path / "k.json"), transport="ipc", ip=str(tmp_path / "k")
    )
    launch = [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file]
    request = {"argv": launch, "env": dict(os.environ), "cwd": str(tmp_path)}
    request["connection_file"] = connection_file

    other = _ask(server, encode({**request, "argv": ["/usr/bin/python3", *launch[1:]]}))
    assert other["refused"] and "the fork server on" in other["error"]
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{")
    broken = {**request, "argv": [*launch[:-1], str(garbled)], "connection_file": str(garbled)}
    broken = _ask(server, encode(broken))
    assert "pid" not in broken
    assert "the forked kernel failed to start" in broken["error"]
    assert _ask(server, b"not json\n") == {}  # dropped; the server goes on serving
    started = _ask(server, encode(request))
    assert started["pid"] > 0  # closing the connection here ended its lease


@pytest.mark.slow
def test_os_exit_in_a_cell_is_a_dead_kernel_and_harms_nothing_else(
    server: ForkServer, tmp_path: Path
) -> None:
    async def bystander() -> Any:
        km = await _start(server.manager_class(), tmp_path)
        await _kernel_info(km)
        return km

    other = asyncio.run(bystander())
    try:
        started = time.monotonic()
        with pytest.raises(DeadKernelError):
            _run(tmp_path, "dies", server.manager_class(), "C = 1", "import os\nos._exit(1)")
        assert time.monotonic() - started < 15
        assert asyncio.run(other.is_alive())
        assert asyncio.run(_kernel_info(other))["content"]["status"] == "ok"
    finally:
        asyncio.run(other.shutdown_kernel(now=True))
    executed = _run(tmp_path, "after", server.manager_class(), "C = 1", "print(C)")
    assert executed.cells[1].outputs[0]["text"] == "1\n"


@pytest.mark.slow
def test_interrupt_stops_a_running_cell(server: ForkServer, tmp_path: Path) -> None:
    async def interrupted() -> dict[str, Any]:
        km = await _start(server.manager_class(), tmp_path)
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=30)
            msg_id = client.execute("import time\ntime.sleep(60)")
            await asyncio.sleep(0.5)
            await km.interrupt_kernel()
            reply: dict[str, Any] = await client._async_get_shell_msg(timeout=15)
            assert reply["parent_header"]["msg_id"] == msg_id
            return reply
        finally:
            client.stop_channels()
            await km.shutdown_kernel(now=True)

    reply = asyncio.run(interrupted())
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait() is missing.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow
def test_closing_the_lease_kills_the_kernel_and_its_children(
    server: ForkServer, tmp_path: Path
) -> None:
    async def lease_closed() -> tuple[int, int]:
        km = await _start(server.manager_class(), tmp_path)
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=30)
            code = "import subprocess\np = subprocess.Popen(['sleep', '60'])\nprint(p.pid)"
            client.execute(code)
            while True:
                msg = await client.get_iopub_msg(timeout=15)
                if msg["msg_type"] == "stream":
                    child = int(msg["content"]["text"])
                    break
        finally:
            client.stop_channels()
        kernel = km.provisioner.pid
        await km.provisioner.cleanup()  # the driver is done, or died: the lease closes
        await km.cleanup_resources()
        return kernel, child

    kernel, child = asyncio.run(lease_closed())
    assert _wait_gone(kernel)
    assert _wait_gone(child)


@pytest.mark.slow
def test_kernels_die_with_the_server(tmp_path: Path) -> None:
    async def start_on(running: ForkServer) -> Any:
        km = await _start(running.manager_class(), tmp_path)
        await _kernel_info(km)
        return km

    with ForkServer() as running:
        km = asyncio.run(start_on(running))
        assert km.started_by == "fork"
        pid = km.provisioner.pid
        assert running.pid is not None
        os.kill(running.pid, signal.SIGKILL)  # no clean-up at all: the kernels must notice
        assert _wait_gone(pid)
        assert asyncio.run(km.is_alive()) is False
        asyncio.run(km.shutdown_kernel(now=True))


@pytest.mark.slow
def test_requests_sent_while_the_server_imports_wait_for_it(tmp_path: Path) -> None:
    async def first_kernel(running: ForkServer) -> str | None:
        km = await _start(running.manager_class(), tmp_path)
        try:
            await _kernel_info(km)
        finally:
            await km.shutdown_kernel(now=True)
        return km.started_by

    running = ForkServer(["numpy"])
    try:
        running.start(wait=False)  # returns once it listens, before its imports
        assert asyncio.run(first_kernel(running)) == "fork"
        running.wait_ready()
        assert running.imported == ["numpy"]
    finally:
        running.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_hundred_kernels_four_at_a_time(server: ForkServer, tmp_path: Path) -> None:
    """Start-up must be robust: every kernel starts, answers and shuts down, none hangs."""
    failures: list[str] = []
    started_by: list[str | None] = []

    async def one(index: int, slots: asyncio.Semaphore) -> None:
        async with slots:
            km = None
            try:
                km = await _start(server.manager_class(), tmp_path, timeout=60)
                started_by.append(km.started_by)
                assert await km.is_alive()
                reply = await asyncio.wait_for(_kernel_info(km), 60)
                assert reply["content"]["status"] == "ok"
                await asyncio.wait_for(km.shutdown_kernel(), 30)
                assert not await km.is_alive()
            except BaseException as error:
                failures.append(f"kernel {index}: {error!r}")
                if km is not None:
                    await km.shutdown_kernel(now=True)

    async def all_of_them() -> None:
        slots = asyncio.Semaphore(4)
        await asyncio.gather(*(one(index, slots) for index in range(200)))

    started = time.monotonic()
    asyncio.run(all_of_them())
    elapsed = time.monotonic() - started
    print(f"200 kernels in {elapsed:.1f} s", file=sys.stderr)
    assert failures == []
    assert started_by == ["fork"] * 200
