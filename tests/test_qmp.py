"""QMP with a client nobody here wrote (qemu.qmp from PyPI), and the protocol's bad input
over a raw socket: error replies, and the connection and the VM go on."""

import asyncio
import json
import socket

import pytest

import guests
from monitor_client import PyhvProcess

qmp = pytest.importorskip("qemu.qmp")


@pytest.fixture(scope="module")
def vm(firmware_dir, tmp_path_factory):
    process = PyhvProcess(tmp_path_factory.mktemp("qmp"), guests.guest_path("steer", firmware_dir))
    process.wait_serial("steer: ready")
    yield process
    process.stop()


def run(coroutine_function, vm):
    async def session():
        client = qmp.QMPClient("test")
        await client.connect(str(vm.qmp_path))
        try:
            return await coroutine_function(client)
        finally:
            try:
                await client.disconnect()
            except EOFError:           # pyhv hung up first (after quit)
                pass
    return asyncio.run(asyncio.wait_for(session(), 60))


def test_greeting_and_queries(vm):
    async def body(client):
        assert client.greeting._asdict()["QMP"]["version"]["package"] == "pyhv"
        assert await client.execute("query-status") == {"status": "running", "running": True,
                                                        "singlestep": False}
        assert await client.execute("query-kvm") == {"enabled": True, "present": True}
        assert await client.execute("query-name") == {}
        names = {c["name"] for c in await client.execute("query-commands")}
        assert {"qmp_capabilities", "query-stats", "human-monitor-command", "system_reset"} <= names
        cpus = await client.execute("query-cpus-fast")
        assert cpus[0]["cpu-index"] == 0 and cpus[0]["qom-path"] == "/machine/unattached/device[0]"
        assert cpus[0]["thread-id"] > 0
        chardevs = {c["label"]: c["filename"] for c in await client.execute("query-chardev")}
        assert chardevs["serial0"] == "file" and "compat_monitor1" in chardevs
        version = await client.execute("query-version")
        assert set(version["qemu"]) == {"major", "minor", "micro"}
    run(body, vm)


def test_stop_cont_and_reset_events(vm):
    async def body(client):
        with client.listener() as listener:
            await client.execute("stop")
            assert (await client.execute("query-status"))["status"] == "paused"
            await client.execute("cont")
            await client.execute("system_reset")
            events = [await asyncio.wait_for(listener.get(), 10) for _ in range(3)]
        assert [e["event"] for e in events] == ["STOP", "RESUME", "RESET"]
        assert events[2]["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
        assert all(set(e["timestamp"]) == {"seconds", "microseconds"} for e in events)
    before = vm.serial_text().count("steer: boot ")
    run(body, vm)
    vm.wait_serial("steer: boot ", count=before + 1)


def test_human_monitor_command_and_stats(vm):
    async def body(client):
        assert await client.execute("human-monitor-command", {"command-line": "info status"}) == \
            "VM status: running\r\n"
        registers = await client.execute("human-monitor-command",
                                         {"command-line": "info registers", "cpu-index": 0})
        assert "EIP=" in registers
        vm_stats = {s["name"]: s["value"] for s in
                    (await client.execute("query-stats", {"target": "vm"}))[0]["stats"]}
        assert vm_stats["exits"] >= vm_stats["exits_io_instruction"] > 0
        vcpu = await client.execute("query-stats", {"target": "vcpu", "providers": [
            {"provider": "kvm", "names": ["exits", "instructions"]}]})
        assert vcpu[0]["qom-path"] == "/machine/unattached/device[0]"
        assert [s["name"] for s in vcpu[0]["stats"]] == ["exits", "instructions"]
        schemas = await client.execute("query-stats-schemas")
        times = [s for s in schemas[0]["stats"] if s["name"] == "exit_time"]
        assert times == [{"name": "exit_time", "type": "cumulative", "unit": "seconds", "base": 10,
                          "exponent": -9}]
        jit = (await client.execute("x-query-jit"))["human-readable-text"]
        assert jit.startswith("Translation buffer state of vCPU 0:\ngen code size       ")
    run(body, vm)


@pytest.mark.parametrize("command, arguments, error_class, desc", [
    ("no-such-command", None, "CommandNotFound", "The command no-such-command has not been found"),
    ("query-stats", None, "GenericError", "Parameter 'target' is missing"),
    ("query-stats", {"target": 1}, "GenericError", "Invalid parameter type for 'target', expected: string"),
    ("query-status", {"extra": 1}, "GenericError", "Parameter 'extra' is unexpected"),
    ("human-monitor-command", {"command-line": "cpu 7"}, None, None),
])
def test_bad_commands_get_qemu_errors(vm, command, arguments, error_class, desc):
    async def body(client):
        if error_class is None:    # HMP errors are output, not QMP errors
            assert await client.execute(command, arguments) == "invalid CPU index\r\n"
        else:
            with pytest.raises(qmp.ExecuteError) as info:
                await client.execute(command, arguments)
            assert info.value.error_class == error_class and info.value.error.error.desc == desc
        assert (await client.execute("query-status"))["running"]
    run(body, vm)


class RawQmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.greeting = self.read()

    def read(self):
        while True:
            message = json.loads(self.file.readline())
            if "event" not in message:
                return message

    def send(self, data: bytes):
        self.sock.sendall(data)
        return self.read()

    def close(self):
        self.file.close()
        self.sock.close()


def test_raw_protocol_errors_keep_the_connection(vm):
    raw = RawQmp(str(vm.qmp_path))
    try:
        assert "QMP" in raw.greeting
        assert raw.send(b'{"execute": "query-status"}\n') == {"error": {
            "class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}
        assert raw.send(b'{"execute": "qmp_capabilities", "id": 1}\n') == {"return": {}, "id": 1}
        assert raw.send(b'{"execute": "qmp_capabilities"}\n')["error"]["class"] == "CommandNotFound"
        reply = raw.send(b'{"execute": "query-status", oops}\n')
        assert reply["error"]["class"] == "GenericError" and reply["error"]["desc"].startswith("JSON parse error")
        assert raw.send(b'[1, 2]\n') == {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}
        assert raw.send(b'{"id": 5}\n') == {"error": {"class": "GenericError",
                                                     "desc": "QMP input lacks member 'execute'"}, "id": 5}
        assert raw.send(b'{"execute": "stop", "bogus": 1}\n')["error"]["desc"] == \
            "QMP input member 'bogus' is unexpected"
        assert raw.send(b'{"execute": "stop", "arguments": []}\n')["error"]["desc"] == \
            "QMP input member 'arguments' must be an object"
        # an object split across writes is still one request
        raw.sock.sendall(b'{"execute": "query-')
        assert raw.send(b'status", "id": "x"}\n') == {
            "return": {"status": "running", "running": True, "singlestep": False}, "id": "x"}
    finally:
        raw.close()
    assert vm.proc.poll() is None


def test_quit_emits_shutdown_and_ends_the_process(firmware_dir, tmp_path):
    process = PyhvProcess(tmp_path, guests.guest_path("steer", firmware_dir), monitor=False)
    try:
        process.wait_serial("steer: ready")

        async def body(client):
            with client.listener() as listener:
                await client.execute("quit")
                return await asyncio.wait_for(listener.get(), 10)
        event = run(body, process)
        assert event["event"] == "SHUTDOWN" and event["data"] == {"guest": False, "reason": "host-qmp-quit"}
        status, err = process.wait()
        assert status == 0, err
    finally:
        process.stop()
