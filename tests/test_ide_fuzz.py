"""A misbehaving guest against the IDE function: random PRD tables (regions anywhere, in
RAM or not, with or without EOT) under random DMA commands, and random register
accesses. Nothing may raise in the host, DMA may only touch RAM the PRDs describe, and
the disk may only change where a write command said."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ide_board import BM_ACTIVE, BM_ERROR, BSY, PRIMARY, RAM_SIZE, SECTOR, Board, make_image

SECTORS = 64
TABLE = 0x2000
PRD_LIMIT = 512

# region bases: in low RAM, at its end, in the PCI hole / MMIO, beyond 4 GiB, odd
bases = st.one_of(st.integers(0x10000, 0x80000), st.integers(RAM_SIZE - 0x2000, RAM_SIZE + 0x1000),
                  st.sampled_from([0, 1, 0xFEC00000, 0xFFFFF000, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))
entries = st.tuples(bases, st.integers(0, 0xFFFF), st.booleans())
DMA_COMMANDS = {"read": 0xC8, "write": 0xCA, "read_ext": 0x25, "write_ext": 0x35, "trim": 0x06}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ide-fuzz")


def fresh_board(image_dir):
    path = image_dir / "disk.img"
    original = make_image(path, SECTORS)
    return Board({0: path}), path, original


def described_mask(ram, table_at):
    """A byte per RAM byte: 1 where the PRD table in ``ram`` at ``table_at`` reaches."""
    mask = bytearray(RAM_SIZE)
    for at in range(table_at, min(table_at + 8 * PRD_LIMIT, RAM_SIZE - 7), 8):
        base, count = struct.unpack_from("<II", ram, at)
        base &= ~1
        end = min(base + ((count & 0xFFFE) or 0x10000), RAM_SIZE)
        mask[base:end] = b"\1" * max(end - base, 0)
        if count & 0x80000000:
            break
    return mask


def only_changed_where(before, after, mask, page=4096):
    """Whether every byte that differs has its mask byte set."""
    ones = b"\1" * page
    for start in range(0, len(before), page):
        end = start + page
        if before[start:end] != after[start:end] and mask[start:end] != ones:
            if any(before[i] != after[i] and not mask[i] for i in range(start, end)):
                return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.lists(entries, max_size=12), command=st.sampled_from(sorted(DMA_COMMANDS)),
       lba=st.integers(0, SECTORS + 2), count=st.integers(0, 40), start_first=st.booleans(),
       to_memory=st.booleans(), table_at=st.sampled_from([TABLE, RAM_SIZE - 8, RAM_SIZE + 0x10000]))
def test_random_prd_tables(image_dir, table, command, lba, count, start_first, to_memory, table_at):
    board, path, original = fresh_board(image_dir)
    try:
        if table_at < RAM_SIZE:
            for i, (base, size, eot) in enumerate(table[:(RAM_SIZE - table_at) // 8]):
                struct.pack_into("<II", board.ram, table_at + 8 * i, base, size | (0x80000000 if eot else 0))
        board.ram[0x10000:0x90000] = bytes([0xEE]) * 0x80000       # what a DMA write would send
        before = bytes(board.ram)
        board.pio.write(board.bm_port(4), 4, table_at)
        opcode = DMA_COMMANDS[command]
        issue = (lambda: board.command48(opcode, lba=lba, count=count)) if command.endswith("ext") else \
            (lambda: board.command28(opcode, lba=lba, count=count, feature=1))
        if start_first:
            board.bm_start(to_memory)
            issue()
        else:
            issue()
            board.bm_start(to_memory)
        status, bm = board.altstatus(), board.bm_status()
        assert not status & BSY
        assert not (bm & BM_ERROR and bm & BM_ACTIVE)
        if command.startswith("read"):
            assert only_changed_where(before, board.ram, described_mask(before, table_at))
        else:
            assert before == board.ram
        data = path.read_bytes()
        assert len(data) == len(original)
        if command.startswith("write"):
            sectors = count or (0x10000 if command.endswith("ext") else 0x100)
            first, last = lba * SECTOR, (lba + sectors) * SECTOR
            assert data[:first] == original[:first] and data[last:] == original[last:]
        else:
            assert data == original
    finally:
        board.close()


ports = st.one_of(st.integers(0x1F0, 0x1F7), st.just(0x3F6), st.integers(0, 15).map(lambda o: -1 - o))
accesses = st.tuples(st.booleans(), ports, st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(accesses, max_size=60), ram_noise=st.binary(min_size=64, max_size=64))
def test_random_register_accesses(image_dir, ops, ram_noise):
    board, path, original = fresh_board(image_dir)
    try:
        for offset in range(0, 0x8000, 64):                # PRDs anywhere in the first 32 KiB
            board.ram[offset:offset + 64] = ram_noise
        for is_write, port, size, value in ops:
            if port < 0:
                port = board.bmiba + (-1 - port)
            if is_write:
                board.pio.write(port, size, value & ((1 << (8 * size)) - 1))
            else:
                assert 0 <= board.pio.read(port, size) < 1 << (8 * size)
        assert board.irq_level(PRIMARY) in (0, 1)
        assert len(path.read_bytes()) == len(original)
    finally:
        board.close()
