"""cffi builder for the C core ("the silicon"), compiled out-of-line into kvm._silicon."""
import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = sorted(
    os.path.join("cffi_build", name) for name in os.listdir(HERE) if name.endswith(".c")
)


def _api_declarations():
    """The silicon's interface and that of kvm/'s compiled half (root_api.h)."""
    text = ""
    for name in ("silicon_api.h", "root_api.h"):
        with open(os.path.join(HERE, name)) as f:
            text += f.read()
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


# PYHV_SANITIZE=address,undefined: a debug build for the sanitizer tests
SANITIZE = os.environ.get("PYHV_SANITIZE")
OPTIMIZE = [f"-fsanitize={SANITIZE}", "-O1", "-g", "-fno-omit-frame-pointer"] if SANITIZE else ["-O2"]

ffibuilder = FFI()
ffibuilder.cdef(
    _api_declarations()
    + """
    enum { VMX_SUCCEED = 0, VMX_FAIL_INVALID = 1, VMX_FAIL_VALID = 2, VMX_EXITED = 3 };
    """
)
# a direct build with --out DIR goes to DIR/kvm; cffi compiles there, so with absolute
# sources (setuptools wants them relative to the project root)
OUT = sys.argv[sys.argv.index("--out") + 1] if __name__ == "__main__" and "--out" in sys.argv else None
ffibuilder.set_source(
    "kvm._silicon",
    '#include "core.h"\n#include "root.h"\n',
    sources=SOURCES if OUT is None else [os.path.join(HERE, "..", source) for source in SOURCES],
    include_dirs=[HERE],
    # internal calls stay inside the library (no PLT): only the module's init is exported
    extra_compile_args=["-std=gnu11", *OPTIMIZE, "-fno-strict-aliasing", "-fvisibility=hidden",
                        "-fno-semantic-interposition", "-mcx16", "-Wall", "-Wextra",
                        "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
    extra_link_args=[f"-fsanitize={SANITIZE}"] if SANITIZE else [],
    libraries=["pthread"],
)

if __name__ == "__main__":
    # a direct build (for working on the core): from the repository root, in place
    os.chdir(os.path.join(HERE, ".."))
    ffibuilder.compile(tmpdir=OUT or ".", verbose=False)
