"""The one way into a run: check the request, then run it here or in a distributed child."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from nncards.contract import arrays
from nncards.contract.errors import NncardsError, Problem
from nncards.contract.run import Run, RunResult
from nncards.execute.distributed import run_distributed
from nncards.execute.options import RunOptions
from nncards.execute.runner import run_steps


def count_array_elements(request: Run) -> int:
    """Every array element a request carries: initial weights and every step's arrays."""
    values = [v for group in request.array_groups() for v in group.values()]
    return sum(arrays.count_elements(v.model_dump() if isinstance(v, BaseModel) else v) for v in values)


def decode_arrays(request: Run) -> None:
    """Every array of the request as a NumPy array, in place, once: the limit then counts sizes and
    the steps only cast. One that does not decode stays as given, for the step that reads it to
    report `array_invalid` with its node."""
    for group in request.array_groups():
        for key, value in group.items():
            try:
                group[key] = arrays.decode(value.model_dump() if isinstance(value, BaseModel) else value)
            except (arrays.ArrayError, ValidationError):
                pass


def checked_request(request: dict | Run, options: RunOptions) -> Run:
    """The request as a RUN model within the array limit; `NncardsError` otherwise."""
    if not isinstance(request, Run):
        try:
            request = Run.model_validate(request)
        except ValidationError as exc:
            problems = [Problem(code="request_invalid", port="/".join(map(str, e["loc"])), message=e["msg"])
                        for e in exc.errors()]
            raise NncardsError("request_invalid", "The run request does not fit the RUN model.", problems)
    decode_arrays(request)
    elements = count_array_elements(request)
    if elements > options.limits.max_array_elements:
        raise NncardsError("too_large", f"the request holds {elements} array elements, more than the limit "
                           f"of {options.limits.max_array_elements}")
    return request


def check_runs_here(request: Run) -> None:
    """Refuse what one machine cannot run: several workers need a Ray cluster."""
    if request.distribution is not None and request.distribution.across_workers:
        message = ("a multi_worker_mirrored run with several workers needs a Ray cluster "
                   "(nncards serve --executor ray)")
        raise NncardsError("request_invalid", message, [Problem(
            code="param_invalid", port="distribution/workers", message=message, expected=1,
            received=request.distribution.workers)])


def execute(request: dict | Run, options: RunOptions | None = None) -> RunResult:
    """Run a RUN here and return its RUN RESULT; failures are reported in it, never raised."""
    options = options or RunOptions()
    try:
        request = checked_request(request, options)
        check_runs_here(request)
    except NncardsError as exc:
        return RunResult.failed(options.run_id, exc)
    if request.distribution is not None:
        return run_distributed(request, options)
    return run_steps(request, options)
