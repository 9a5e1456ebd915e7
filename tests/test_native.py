"""nncards.native: C++ sources built on first use, what a build leaves behind."""

import ctypes
import subprocess
import time

import pytest

from nncards import native

SOURCE = b'extern "C" int answer() { return 42; }\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "machine-tmp"))  # the machine's /tmp, for the compiler
    (tmp_path / "machine-tmp").mkdir()
    source = tmp_path / "answer.cc"
    source.write_bytes(SOURCE)
    return tmp_path


def compile_answer(source):
    return lambda output: [native.compiler(), "-shared", "-fPIC", "-o", output, str(source)]


def test_a_build_sweeps_what_a_killed_build_left(cache):
    target = native.library_path("answer", [SOURCE])
    killed = target.parent / f".{target.stem}-k1ll3d"  # the folder of a build killed midway
    killed.mkdir(parents=True)
    (killed / "ccA1b2C3.s").write_bytes(b"half")

    library = native.built(target, compile_answer(cache / "answer.cc"))

    assert ctypes.CDLL(str(library)).answer() == 42
    assert sorted(path.name for path in target.parent.iterdir()) == sorted([target.name, target.stem + ".lock"])


def test_the_compilers_temporary_files_stay_in_the_build_folder(cache):
    """A compiler that fails (or is killed) after writing its temporary files leaves nothing in
    the machine's temporary folder, and nothing in the cache once its build is over."""
    target = native.library_path("answer", [SOURCE, b"failing"])
    writes_then_fails = lambda output: ["sh", "-c", 'echo half > "$TMPDIR/ccZ9y8X7.s"; exit 1']

    with pytest.raises(subprocess.CalledProcessError):
        native.built(target, writes_then_fails)

    assert list((cache / "machine-tmp").iterdir()) == []
    assert [path.name for path in target.parent.iterdir()] == [target.stem + ".lock"]


def test_a_library_that_cannot_be_built_is_a_warning_with_the_compilers_last_words(cache, caplog):
    """Once a process: an operator learns why a slower way serves (the batch normalization op on
    a CPU whose features TensorFlow's headers did not compile for was silent)."""
    target = native.library_path("answer", [SOURCE, b"broken"])
    compiler_error = lambda output: ["sh", "-c", "echo 'PacketMathFP16.h:740: error' >&2; exit 1"]
    fails = native.OnFirstUse("answer", lambda: target, compiler_error, ctypes.CDLL)

    with caplog.at_level("WARNING", logger="nncards.native"):
        assert fails.get() is None and fails.get() is None

    [record] = [record for record in caplog.records if record.name == "nncards.native"]
    assert record.levelname == "WARNING" and "answer" in record.getMessage()
    assert "PacketMathFP16.h:740: error" in record.getMessage()


def test_a_library_built_before_is_ready_at_its_first_use_and_a_new_one_is_built_aside(cache):
    """`ready()` loads a library the cache holds at once (a process's first lists run went to the
    slower way while another thread loaded it), and starts the build of one it does not hold
    without waiting for it."""
    target = native.library_path("answer", [SOURCE, b"ready"])
    native.built(target, compile_answer(cache / "answer.cc"))  # built by an earlier process

    def load_in_a_moment(path):  # as a real library's load takes a few milliseconds
        time.sleep(0.2)
        return ctypes.CDLL(path)

    assert native.OnFirstUse("answer", lambda: target, compile_answer(cache / "answer.cc"),
                             load_in_a_moment).ready().answer() == 42

    fresh = native.library_path("answer", [SOURCE, b"fresh"])
    slow_compiler = lambda output: ["sh", "-c", f'sleep 1; exec "$0" "$@"', *compile_answer(cache / "answer.cc")(output)]
    building = native.OnFirstUse("answer", lambda: fresh, slow_compiler, ctypes.CDLL)
    assert building.ready() is None  # the build has started, nobody waits for it
    building.prepare_in_background().join()
    assert building.ready().answer() == 42
