"""A run worker builds the model of the run it is about to take while the server stores the request's
arrays (PrepareRun), and the run uses that model only when it is what the run would have built itself."""

import contextlib
import multiprocessing
import os
import time

import numpy as np
import pytest

from graphs import edge, node
from nncards.contract.limits import DEFAULT_LIMITS
from nncards.contract.run import Run
from nncards.execute.entry import decode_arrays, execute
from nncards.execute.messages import RunFinished
from nncards.execute.options import RunOptions
from nncards.execute.runner import fit_compile
from nncards.server.services.request_arrays import StoredRequest
from nncards.server.services.workers import GraphValidated, PrepareRun, ValidateGraph, worker_main

BUILT_AGAIN = "the run built its model itself"
COMPILED_AGAIN = "the run compiled its model itself"


def worker_that_cannot_build(*arguments) -> None:
    """`worker_main`, in which a run that builds its model itself fails (with BUILT_AGAIN)."""
    from nncards.execute import runner

    def refuse(*_, **__):
        raise RuntimeError(BUILT_AGAIN)

    runner.build = refuse
    worker_main(*arguments)


def worker_that_cannot_build_or_compile(*arguments) -> None:
    """`worker_that_cannot_build`, in which a run that compiles a model nobody compiled ahead fails
    (with COMPILED_AGAIN); one compiled ahead with other settings is compiled again as usual."""
    from nncards.execute import runner

    compile_in_run = runner.RunModel._compile

    def refuse_unless_compiled(self, *settings):
        if self.compiled_with is None:
            raise RuntimeError(COMPILED_AGAIN)
        compile_in_run(self, *settings)

    runner.RunModel._compile = refuse_unless_compiled
    worker_that_cannot_build(*arguments)


def dense_graph(units: int = 3) -> dict:
    nodes = [node("x", "input", shape=[4]), node("dense", "layer_Dense", units=units), node("y", "output")]
    return {"nodes": nodes, "edges": [edge("x", "output", "dense", "input"), edge("dense", "output", "y", "input")]}


def fit_request(seed: int) -> dict:
    # Random initial weights and a shuffled fit: both draw on the seed, in the order the run makes them.
    x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    return {"graph": dense_graph(), "seed": seed,
            "steps": [{"kind": "fit", "inputs": {"x": x}, "targets": {"y": x[:, :3] * 2}, "epochs": 3,
                       "batch_size": 4, "shuffle": True}]}


class SpawnedWorker:
    def __init__(self, tmp_path, target=worker_that_cannot_build):
        context = multiprocessing.get_context("spawn")
        self.tmp_path = tmp_path
        self.connection, child = context.Pipe()
        self.cancel = context.Event()  # kept: the child opens it as it starts
        self.process = context.Process(target=target, daemon=True, args=(
            child, self.cancel, os.getpid(), 1, 0, DEFAULT_LIMITS, tmp_path / "results", 10**6, None))
        self.process.start()
        child.close()

    def ask(self, message):
        self.connection.send(message)
        answer = self.connection.recv()
        assert isinstance(answer, GraphValidated) and answer.ticket == message.ticket
        return answer.result

    def run(self, run_id: str, request: dict):
        run = Run.model_validate(request)
        decode_arrays(run)
        self.connection.send((run_id, StoredRequest.set_aside(run, self.tmp_path / run_id)))
        while not isinstance(message := self.connection.recv(), RunFinished):
            pass
        return message.result

    def stop(self):
        self.process.kill()
        self.process.join(10)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    spawned = SpawnedWorker(tmp_path_factory.mktemp("worker"))
    yield spawned
    spawned.stop()


def in_process_history(request: dict) -> dict:
    result = execute(request)
    assert result.status == "succeeded", result.error
    return result.steps[0].history


def test_a_run_takes_the_model_built_ahead_and_ends_as_if_it_had_built_it(worker):
    worker.connection.send(PrepareRun(Run.model_validate(fit_request(7)).graph.model_dump(), 7))
    result = worker.run("ahead", fit_request(7))
    assert result.status == "succeeded", result.error  # it did not build: building fails in this worker
    assert result.steps[0].history == in_process_history(fit_request(7))


def test_a_model_built_ahead_is_dropped_unless_the_next_message_is_its_run(worker):
    graph = Run.model_validate(fit_request(7)).graph.model_dump()
    worker.connection.send(PrepareRun(graph, 7))
    result = worker.run("other seed", fit_request(8))
    assert result.status == "failed" and BUILT_AGAIN in result.error.message

    worker.connection.send(PrepareRun(graph, 7))
    assert worker.ask(ValidateGraph(1, dense_graph(units=5)))["valid"]  # may draw on the random state
    result = worker.run("after a validation", fit_request(7))
    assert result.status == "failed" and BUILT_AGAIN in result.error.message


def test_a_run_takes_the_model_compiled_ahead_and_ends_as_if_it_had_compiled_it(tmp_path):
    request = Run.model_validate(fit_request(7))
    graph, compiled = request.graph.model_dump(), fit_compile(request.steps[0])
    other = ({"name": "sgd", "learning_rate": 0.5}, "mae", [])
    compiling = SpawnedWorker(tmp_path, worker_that_cannot_build_or_compile)
    try:
        # As a server asks: the model as the body arrives, then its compiling once the body is parsed.
        compiling.connection.send(PrepareRun(graph, 7))
        compiling.connection.send(PrepareRun(graph, 7, compiled))
        result = compiling.run("compiled ahead", fit_request(7))
        assert result.status == "succeeded", result.error  # it neither built nor compiled the model itself
        assert result.steps[0].history == in_process_history(fit_request(7))

        compiling.connection.send(PrepareRun(graph, 7, other))  # built and compiled, for another fit
        result = compiling.run("compiled for another fit", fit_request(7))
        assert result.status == "succeeded", result.error
        assert result.steps[0].history == in_process_history(fit_request(7))

        compiling.connection.send(PrepareRun(graph, 7))
        result = compiling.run("built ahead only", fit_request(7))
        assert result.status == "failed" and COMPILED_AGAIN in result.error.message
    finally:
        compiling.stop()


def test_a_graph_that_does_not_build_is_left_to_its_run(worker):
    request = fit_request(7)
    request["graph"]["edges"] = request["graph"]["edges"][:1]  # the Output has no input
    worker.connection.send(PrepareRun(Run.model_validate(request).graph.model_dump(), 7))
    result = worker.run("invalid", request)
    assert result.status == "failed" and BUILT_AGAIN in result.error.message  # nothing was built ahead


@contextlib.contextmanager
def worker_with_a_fresh_cache(tmp_path, monkeypatch):
    """A spawned worker whose op cache is empty, so that it must compile nncards' op; killed at the end."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    context = multiprocessing.get_context("spawn")
    connection, child = context.Pipe()
    cancel = context.Event()
    process = context.Process(target=worker_main, daemon=True, args=(
        child, cancel, os.getpid(), 1, 0, DEFAULT_LIMITS, tmp_path / "results", 10**6, None))
    process.start()
    try:
        yield process
    finally:
        process.kill()
        process.join(10)


def wait_for(files, process, seconds: float = 180) -> list:
    """The files of the glob `files` once there are any (the process still alive meanwhile)."""
    deadline = time.monotonic() + seconds
    while not (found := list(files())) and time.monotonic() < deadline:
        assert process.is_alive()
        time.sleep(0.2)
    return found


def test_a_worker_builds_the_batch_normalization_op_before_its_first_run(tmp_path, monkeypatch):
    """The first use on a machine compiles nncards' op (~10 s): a starting worker does it, idle."""
    with worker_with_a_fresh_cache(tmp_path, monkeypatch) as process:
        [library] = wait_for(lambda: (tmp_path / "cache").glob("nncards/ops/batch_norm_op-*.so"), process)
    assert [p.name for p in library.parent.glob("*.so")] == [library.name]  # no partial build left


def compiling(path) -> list[int]:
    """The processes whose command line names this path."""
    found = []
    for entry in os.scandir("/proc"):
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                if str(path).encode() in cmdline.read():
                    found.append(int(entry.name))
        except (OSError, ValueError):
            pass
    return found


def test_a_worker_killed_while_it_compiles_leaves_no_compiler_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "machine-tmp"))  # the machine's /tmp, for the compiler
    (tmp_path / "machine-tmp").mkdir()
    with worker_with_a_fresh_cache(tmp_path, monkeypatch) as process:
        [folder] = wait_for(lambda: (tmp_path / "cache").glob("nncards/ops/.batch_norm_op-*"), process)
        deadline = time.monotonic() + 60
        while not compiling(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert compiling(folder)
    deadline = time.monotonic() + 10
    while compiling(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert compiling(folder) == []
    assert list((tmp_path / "machine-tmp").glob("cc*")) == []  # the compiler's files are in its build folder


def test_sends_to_a_worker_that_stops_fail_with_oserror(tmp_path):
    """What the dispatcher and validations handle: a send still waiting when its worker is stopped
    fails with OSError, never CancelledError (which would end the dispatcher)."""
    import asyncio

    from nncards.server.services.workers import LocalExecutor

    async def scenario():
        executor = LocalExecutor(lambda message: None, lambda run_id, reason: None, size=1, threads=1, niceness=0,
                                 limits=DEFAULT_LIMITS, results_dir=tmp_path, max_result_elements=10**6)
        executor.start()
        worker = executor._spawn()  # still starting: it reads nothing, so a large send waits on the pipe
        sends = [worker.send(b"x" * 2**24), worker.send(("run", None))]
        await asyncio.sleep(0.2)
        executor.close()
        return await asyncio.gather(*sends, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(outcome, OSError) for outcome in outcomes), outcomes


def test_full_collections_in_a_worker_skip_what_tensorflow_brought():
    """Full collections in a worker walk only what its runs made, not the objects of TensorFlow's import."""
    import subprocess
    import sys

    code = ("import gc, time\n"
            "from nncards.server.services.validation import start_tensorflow\n"
            "start_tensorflow(1)\n"
            "started = time.process_time()\n"
            "gc.collect()\n"
            "print(gc.get_freeze_count(), time.process_time() - started)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    frozen, seconds = done.stdout.split()
    assert int(frozen) > 100_000 and float(seconds) < 0.05, done.stdout  # unfrozen: ~0.17 s of CPU


@contextlib.contextmanager
def worker_on_a_thread(tmp_path, monkeypatch):
    """worker_main on a thread of this process, to see its objects: its connection, and weak
    references to the Keras models it builds ahead."""
    import threading
    import weakref

    from nncards.server.services import workers

    built = []

    def recorded(*arguments):
        model = build_checked(*arguments)
        built.append(weakref.ref(model.model))
        return model

    build_checked = workers.build_checked
    monkeypatch.setattr(workers, "build_checked", recorded)
    monkeypatch.setattr(workers, "die_with_parent", lambda pid: None)
    monkeypatch.setattr("nncards.server.services.validation.start_tensorflow", lambda threads: None)
    connection, child = multiprocessing.Pipe()
    thread = threading.Thread(target=workers.worker_main, args=(
        child, multiprocessing.Event(), os.getpid(), 1, 0, DEFAULT_LIMITS, tmp_path / "results", 10**6, None))
    thread.start()
    try:
        yield connection, built
    finally:
        connection.close()
        thread.join(30)


def run_built_ahead(connection, tmp_path) -> None:
    """A fit whose model the worker builds ahead, until the worker is done with it (it answers the
    next message, a validation, once it is)."""
    connection.send(PrepareRun(Run.model_validate(fit_request(7)).graph.model_dump(), 7))
    run = Run.model_validate(fit_request(7))
    decode_arrays(run)
    connection.send(("run", StoredRequest.set_aside(run, tmp_path / "request")))
    while not isinstance(message := connection.recv(), RunFinished):
        pass
    assert message.result.status == "succeeded", message.result.error
    connection.send(ValidateGraph(1, dense_graph()))
    assert connection.recv().ticket == 1


def test_a_worker_holds_no_model_once_its_run_has_finished(tmp_path, monkeypatch):
    """An idle worker may wait for minutes: the model it built ahead goes with the run that used it."""
    import gc

    with worker_on_a_thread(tmp_path, monkeypatch) as (connection, built):
        run_built_ahead(connection, tmp_path)
        gc.collect()
        assert len(built) == 1 and built[0]() is None


def test_a_worker_collects_a_finished_runs_garbage_before_its_next_message(tmp_path, monkeypatch):
    """What a run leaves in reference cycles (its model among it) is collected once it has finished,
    not by a collection inside a later run. Automatic collection is off here: only the worker's own
    collections can free the model."""
    import gc

    from nncards.server.services.workers import IdleCollector

    monkeypatch.setattr(IdleCollector, "SHARE", 0.0)  # a full collection after every run
    with worker_on_a_thread(tmp_path, monkeypatch) as (connection, built):
        gc.collect()
        gc.disable()
        try:
            run_built_ahead(connection, tmp_path)
            assert len(built) == 1 and built[0]() is None
        finally:
            gc.enable()


def test_a_worker_collects_everything_once_its_old_objects_have_grown_by_a_quarter():
    """IdleCollector makes a full collection when the objects that outlived the young collections
    since its last have grown by more than a quarter, and only then (Python's own rule)."""
    import gc
    import weakref

    from nncards.server.services.workers import IdleCollector

    class Cycle:
        def __init__(self):
            self.itself = self

    def old_garbage(count: int) -> weakref.ref:
        """`count` cycles that outlive a young collection, then become garbage; a reference to one."""
        cycles = [Cycle() for _ in range(count)]
        gc.collect(1)  # the list and its cycles go to the old generation
        one = weakref.ref(cycles[0])
        del cycles
        return one

    gc.collect()
    gc.disable()
    try:
        collector = IdleCollector()
        few = old_garbage(max(10, collector.survivors // 10))
        collector.after_run()
        assert few() is not None  # not due: left to a later full collection
        many = old_garbage(collector.survivors // 4 + 1000)
        collector.after_run()
        assert few() is None and many() is None
        assert collector.survivors == len(gc.get_objects(generation=2))
    finally:
        gc.enable()
