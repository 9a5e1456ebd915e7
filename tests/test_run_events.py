"""A run's event stream ends with its `done` event, however its last writes and a reader interleave.

The service is driven directly on a real run store (no executor: the run's end is written the
way the service's journal writes it), so that the interleaving of interest happens every time:
the end of the run, its `done` event included, is written while the stream asks the store
whether the run has finished. (Under load, a stream over HTTP lost its `done` event this way.)
"""

import asyncio

from nncards.contract.limits import Limits
from nncards.server.services.runs import Retention, RunService
from nncards.server.services.store import RunStore


def collect(stream) -> list:
    async def read():
        return [event async for event in stream]
    return asyncio.run(read())


def test_the_stream_reads_the_events_written_while_it_asked_whether_the_run_had_finished(tmp_path):
    store = RunStore(tmp_path)
    service = RunService(store, Limits(), lambda on_message, on_lost: None, max_queued=1,
                         retention=Retention(keep_runs=10, keep_bytes=2**30), max_result_elements=1000)
    store.create("r1", {})
    store.add_event("r1", "status", {"status": "queued"})
    store.add_event("r1", "status", {"status": "running"})
    asked = []
    store_get = service.get

    async def get_while_the_run_ends(run_id):
        if not asked:  # the run ends (status, result, done) while the store is asked
            store.add_event(run_id, "status", {"status": "succeeded"})
            store.finish(run_id, {"run_id": run_id, "status": "succeeded"})
            store.add_event(run_id, "done", {"status": "succeeded"})
        asked.append(run_id)
        return await store_get(run_id)

    service.get = get_while_the_run_ends
    events = collect(service.events("r1", 2))
    assert [(e.id, e.event, e.data) for e in events] == [(3, "status", {"status": "succeeded"}),
                                                        (4, "done", {"status": "succeeded"})]
    store.close()
