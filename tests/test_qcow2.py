"""qcow2 (and raw) images against the real qemu-img: images qemu-img made read as the
data they were made from (v2 and v3, every refcount width, small and large clusters,
compressed clusters, zero clusters, backing files, internal snapshots); images pyhv
wrote pass ``qemu-img check`` and ``qemu-img compare`` equals the expected content;
random read/write sequences agree with a bytearray; bad images are refused clearly."""

import os
import random
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from devicemodel.block.image import BlockError
from devicemodel.block.open import open_image
from devicemodel.block.qcow2_create import create_qcow2
from devicemodel.block.qcow2_format import INCOMPAT_CORRUPT, INCOMPAT_DIRTY

KiB, MiB = 1 << 10, 1 << 20
SIZE = 4 * MiB


@pytest.fixture(scope="module")
def qemu_img():
    path = shutil.which("qemu-img")
    if path is None:
        pytest.skip("qemu-img is not installed (Debian package qemu-utils)")
    return path


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, args))}: {r.stdout}{r.stderr}"
    return r.stdout


def check_and_compare(image: Path, expected: bytes, tmp_path: Path) -> None:
    """qemu-img finds no errors in ``image`` and sees ``expected`` in it."""
    out = run("qemu-img", "check", image)
    assert "No errors were found" in out, out
    raw = tmp_path / "expected.raw"
    raw.write_bytes(expected)
    run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw)


def text_data(size: int, seed: int = 1) -> bytearray:
    """Compressible data with some zero and some random stretches."""
    rnd = random.Random(seed)
    data = bytearray()
    while len(data) < size:
        kind = rnd.randrange(3)
        chunk = rnd.randrange(1, 200 * KiB)
        if kind == 0:
            data += b"pyhv %d qcow2 " % rnd.randrange(10 ** 6) * (chunk // 16 + 1)
        elif kind == 1:
            data += bytes(chunk)
        else:
            data += rnd.randbytes(chunk)
    return data[:size]


def random_writes(image, model: bytearray, seed: int, count: int = 40) -> None:
    rnd = random.Random(seed)
    for i in range(count):
        offset = rnd.randrange(len(model))
        length = min(rnd.randrange(1, 300 * KiB), len(model) - offset)
        data = rnd.randbytes(length)
        image.write(offset, data)
        model[offset:offset + length] = data
        if i % 8 == 7:
            offset = rnd.randrange(len(model))
            length = min(rnd.randrange(1, 600 * KiB), len(model) - offset)
            image.write_zeroes(offset, length, unmap=bool(i % 16 == 7))
            model[offset:offset + length] = bytes(length)


# --- reading what qemu-img made ---------------------------------------------------

@pytest.mark.parametrize("options", [
    "compat=0.10",                           # version 2
    "compat=1.1",
    "cluster_size=512",
    "cluster_size=2M",
    "refcount_bits=1",
    "refcount_bits=64,cluster_size=4k",
])
def test_qemu_img_convert_reads_back(qemu_img, tmp_path, options):
    data = text_data(SIZE)
    raw = tmp_path / "data.raw"
    raw.write_bytes(data)
    image = tmp_path / "image.qcow2"
    run(qemu_img, "convert", "-f", "raw", "-O", "qcow2", "-o", options, raw, image)
    img = open_image(str(image), read_only=True)
    assert img.format == "qcow2" and img.size == SIZE
    assert img.read(0, SIZE) == data
    assert img.read(SIZE - 3, 3) == data[-3:]
    img.close()


def test_compressed_clusters(qemu_img, tmp_path):
    data = text_data(SIZE, seed=2)
    raw = tmp_path / "data.raw"
    raw.write_bytes(data)
    image = tmp_path / "image.qcow2"
    run(qemu_img, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, image)
    assert "compressed clusters" in run(qemu_img, "check", image)
    assert os.path.getsize(image) < SIZE // 2                 # compression really happened
    img = open_image(str(image))
    assert img.read(0, SIZE) == data
    model = bytearray(data)
    random_writes(img, model, seed=3)           # overwriting compressed clusters frees them
    img.close()
    check_and_compare(image, model, tmp_path)


def test_zero_clusters(qemu_img, tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(b"\xaa" * SIZE)
    image = tmp_path / "over.qcow2"
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", image)
    run("qemu-io", "-c", "write -z 64k 128k", "-c", "write -P 0x55 1M 4k", image)
    img = open_image(str(image))
    expected = bytearray(b"\xaa" * SIZE)
    expected[64 * KiB:192 * KiB] = bytes(128 * KiB)          # zero clusters hide the backing file
    expected[MiB:MiB + 4 * KiB] = b"\x55" * 4 * KiB
    assert img.read(0, SIZE) == expected
    img.write(100 * KiB, b"\x01" * 10)                        # a zero cluster becomes data
    expected[100 * KiB:100 * KiB + 10] = b"\x01" * 10
    img.close()
    check_and_compare(image, expected, tmp_path)


@pytest.mark.parametrize("backing_format", ["raw", "qcow2"])
def test_backing_files(qemu_img, tmp_path, backing_format):
    data = text_data(SIZE, seed=4)
    base = tmp_path / f"base.{backing_format}"
    raw = tmp_path / "base.raw"
    raw.write_bytes(data)
    if backing_format == "qcow2":
        run(qemu_img, "convert", "-f", "raw", "-O", "qcow2", raw, base)
    image = tmp_path / "over.qcow2"
    # a relative backing name is relative to the overlay's directory
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", base.name, "-F", backing_format, image, str(SIZE + MiB))
    img = open_image(str(image))
    assert img.size == SIZE + MiB
    assert img.read(0, SIZE + MiB) == data + bytes(MiB)       # zeros past the backing file's end
    model = bytearray(data + bytes(MiB))
    random_writes(img, model, seed=5)
    img.close()
    check_and_compare(image, model, tmp_path)
    assert open_image(str(base), read_only=True).read(0, SIZE) == data   # the base is untouched


def test_writes_copy_clusters_shared_with_an_internal_snapshot(qemu_img, tmp_path):
    data = text_data(SIZE, seed=6)
    raw = tmp_path / "data.raw"
    raw.write_bytes(data)
    image = tmp_path / "image.qcow2"
    run(qemu_img, "convert", "-f", "raw", "-O", "qcow2", raw, image)
    run(qemu_img, "snapshot", "-c", "before", image)
    img = open_image(str(image))
    model = bytearray(data)
    random_writes(img, model, seed=7, count=20)
    img.close()
    check_and_compare(image, model, tmp_path)
    run(qemu_img, "snapshot", "-a", "before", image)        # the snapshot still holds the old data
    check_and_compare(image, data, tmp_path)


# --- writing images qemu-img checks ---------------------------------------------

@pytest.mark.parametrize("version, cluster_bits, refcount_order", [
    (2, 16, 4), (3, 16, 4), (3, 9, 6), (3, 9, 0), (3, 12, 2), (3, 21, 4), (3, 10, 5)])
def test_pyhv_writes_pass_qemu_img_check(qemu_img, tmp_path, version, cluster_bits, refcount_order):
    image = tmp_path / "image.qcow2"
    create_qcow2(str(image), SIZE, version=version, cluster_bits=cluster_bits, refcount_order=refcount_order)
    check_and_compare(image, bytes(SIZE), tmp_path)
    img = open_image(str(image))
    model = bytearray(SIZE)
    random_writes(img, model, seed=cluster_bits * 10 + refcount_order)
    for offset in range(0, SIZE, 512 * KiB):      # discarded ranges read as zeros without a backing file
        img.discard(offset, 64 * KiB)
        model[offset:offset + 64 * KiB] = img.read(offset, 64 * KiB)
    img.flush()
    img.close()
    check_and_compare(image, model, tmp_path)
    info = run(qemu_img, "info", image)
    assert f"cluster_size: {1 << cluster_bits}" in info


def test_created_overlay_has_the_backing_file(qemu_img, tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(b"\x42" * MiB)
    image = tmp_path / "over.qcow2"
    create_qcow2(str(image), MiB, backing_file=str(base), backing_format="raw")
    info = run(qemu_img, "info", image)
    assert f"backing file: {base}" in info and "backing file format: raw" in info
    check_and_compare(image, b"\x42" * MiB, tmp_path)


def test_qemu_img_grown_image_keeps_working(qemu_img, tmp_path):
    """Writes far apart make the refcount table grow and move (4 KiB clusters: a block
    covers 8 MiB, the first table 4 GiB)."""
    image = tmp_path / "image.qcow2"
    size = 64 * MiB
    run(qemu_img, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", image, str(size))
    img = open_image(str(image))
    model = {}
    for i in range(400):
        offset = (i * 7919 * 1024) % size
        img.write(offset, struct.pack("<Q", i) * 64)
        model[offset] = struct.pack("<Q", i) * 64
    for offset, data in model.items():
        assert img.read(offset, len(data)) == data
    img.close()
    assert "No errors were found" in run(qemu_img, "check", image)


# --- random sequences against a model -------------------------------------------

OPS = st.lists(st.tuples(st.sampled_from(["write", "read", "zero", "discard"]),
                         st.integers(0, 256 * KiB - 1), st.integers(1, 70 * KiB), st.integers(0, 255)),
               min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, kind=st.sampled_from(["raw", "qcow2-v3-512", "qcow2-v2-4k", "qcow2-backing"]))
def test_random_operations_match_a_bytearray(ops, kind):
    size = 256 * KiB
    with tempfile.TemporaryDirectory() as tmp:
        model = bytearray(size)
        path = os.path.join(tmp, "image")
        if kind == "raw":
            with open(path, "wb") as f:
                f.write(bytes(size))
        elif kind == "qcow2-backing":
            base = os.path.join(tmp, "base")
            model = bytearray(random.Random(len(ops)).randbytes(size))
            with open(base, "wb") as f:
                f.write(model)
            create_qcow2(path, size, backing_file=base, backing_format="raw", cluster_bits=12)
        else:
            create_qcow2(path, size, version=2 if "v2" in kind else 3, cluster_bits=9 if "512" in kind else 12)
        img = open_image(path)
        for op, offset, length, byte in ops:
            length = min(length, size - offset)
            if op == "write":
                img.write(offset, bytes([byte]) * length)
                model[offset:offset + length] = bytes([byte]) * length
            elif op == "zero":
                img.write_zeroes(offset, length, unmap=bool(byte & 1))
                model[offset:offset + length] = bytes(length)
            elif op == "discard":      # contents are unspecified afterwards: learn them
                img.discard(offset, length)
                model[offset:offset + length] = img.read(offset, length)
            assert img.read(offset, length) == model[offset:offset + length]
        assert img.read(0, size) == model
        img.close()
        if kind != "raw" and shutil.which("qemu-img"):
            out = subprocess.run(["qemu-img", "check", path], capture_output=True, text=True)
            assert out.returncode == 0, out.stdout + out.stderr


# --- bad images -------------------------------------------------------------------

def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.qcow2"
    create_qcow2(str(path), MiB)
    return path


@pytest.mark.parametrize("offset, data, message", [
    (4, struct.pack(">I", 4), "Unsupported qcow2 version 4"),
    (20, struct.pack(">I", 30), "Cluster size must be a power of two"),
    (32, struct.pack(">I", 1), "encrypted images are not supported"),
    (36, struct.pack(">I", 0), "L1 table of 0 entries is too small"),
    (72, struct.pack(">Q", 1 << 2), "Unsupported qcow2 feature(s): external data file"),
    (72, struct.pack(">Q", 1 << 40), "Unsupported qcow2 feature(s): bit 40"),
    (96, struct.pack(">I", 7), "Reference count entry width too large"),
    (100, struct.pack(">I", 99), "header length 99 is invalid"),
    (0, b"QFI\xfa", "Image is not in qcow2 format"),
])
def test_bad_headers(image, offset, data, message):
    patch(image, offset, data)
    with pytest.raises(BlockError) as e:
        open_image(str(image), "qcow2")
    assert message in str(e.value) and str(image) in str(e.value)


@pytest.mark.parametrize("bit, message", [(INCOMPAT_CORRUPT, "Image is corrupt"), (INCOMPAT_DIRTY, "dirty")])
def test_corrupt_or_dirty_images_open_read_only_only(image, bit, message):
    patch(image, 72, struct.pack(">Q", bit))
    with pytest.raises(BlockError, match=message):
        open_image(str(image))
    img = open_image(str(image), read_only=True)
    assert img.read(0, 16) == bytes(16)
    with pytest.raises(BlockError, match="read-only"):
        img.write(0, b"x")
    img.close()


def test_backing_loop_and_missing_backing_file(tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    create_qcow2(str(a), MiB, backing_file=str(b), backing_format="qcow2")
    create_qcow2(str(b), MiB, backing_file=str(a), backing_format="qcow2")
    with pytest.raises(BlockError, match="backing chain deeper"):
        open_image(str(a))
    create_qcow2(str(a), MiB, backing_file=str(tmp_path / "gone.raw"))
    with pytest.raises(BlockError, match="Could not open .*gone.raw"):
        open_image(str(a))


def test_corrupt_compressed_cluster_is_an_io_error(qemu_img, tmp_path):
    raw = tmp_path / "data.raw"
    raw.write_bytes(b"compress me " * (SIZE // 12))
    image = tmp_path / "image.qcow2"
    run(qemu_img, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, image)
    img = open_image(str(image), read_only=True)
    entry = img._entry(3)
    img.close()
    offset = entry & ((1 << 54) - 1)
    patch(image, offset, b"\xff" * 64)
    img = open_image(str(image), read_only=True)
    with pytest.raises(BlockError, match="compressed cluster .* is corrupt"):
        img.read(3 * 64 * KiB, 512)
    assert img.read(0, 12) == b"compress me "     # the other clusters are fine
    img.close()


def test_out_of_range_requests_are_refused(image):
    img = open_image(str(image))
    for offset, length in ((MiB, 1), (-1, 1), (MiB - 1, 2)):
        with pytest.raises(BlockError):
            img.read(offset, length)
        with pytest.raises(BlockError):
            img.write(offset, bytes(length))
    img.close()
