"""What a worker's replies mean, in words for the student: the parent's messages for every way a submission
can fail (raised, exited, crashed, refused, returned the wrong thing), built from checked reply fields only.
"""

from __future__ import annotations

import signal
from typing import Any

import numpy as np

from gradcheckers._wire import Garbled, field, frames, rebuild
from gradcheckers.errors import InvalidArgument, LoadError, SubmissionFailure
from gradcheckers.limits import Limits
from gradcheckers.submission import CELL_SECONDS, SubmissionSource, load_error

__all__ = ["Replies", "death", "forbidden_message"]

_SIGNALS: dict[int, str] = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "arithmetic fault",
    signal.SIGILL: "illegal instruction",
    signal.SIGKILL: "killed; the system may have run out of memory",
}


class Replies:
    """Reads the replies of one submission's worker: ``defined`` is updated by the Worker after each load."""

    def __init__(self, source: SubmissionSource, limits: Limits) -> None:
        self._source = source
        self._limits = limits
        self.defined: frozenset[str] = frozenset()

    def load_failure(self, reply: dict[str, Any]) -> LoadError:
        path, kind = self._source.path, field(reply, "kind", str)
        where = self.where(reply)
        if kind == "forbidden":
            return load_error(f"{path}: {forbidden_message(field(reply, 'api', str), where)}", "forbidden")
        if kind == "exit":
            code = field(reply, "message", str)
            return load_error(
                f"{path} tried to end the program (SystemExit({code})) while loading{where}: a submission must only "
                'define functions; remove the call or put it under `if __name__ == "__main__":`',
                "exit",
            )
        if kind == "memory":
            return load_error(
                f"{path} ran out of memory while loading{where}: its top-level code needs more than the "
                f"{self._limits.memory_mb} MB a submission may use",
                "memory",
            )
        if kind != "exception":
            raise Garbled(f"unexpected failure kind {kind!r}")
        raw = field(reply, "frames", list)
        lines = [f"{path} raised an exception while loading (its top-level code ran into an error):"]
        lines += [f"  {self._source.locate(n)}, in {f}: {self._source.line(n)}" for n, f in frames(raw)]
        lines.append(f"{field(reply, 'type', str)}: {field(reply, 'message', str)}{self.hint(reply)}")
        return load_error("\n".join(lines), "error")

    def result(
        self, function: str, key: str | None, device: str, reply: dict[str, Any], payload: bytearray
    ) -> np.ndarray:
        status = field(reply, "status", str)
        if status == "ok":
            return rebuild(reply, payload)
        name = f"{function}()"
        if status == "missing":
            if field(reply, "what", str) == "key":
                keys = ", ".join(repr(k) for k in field(reply, "keys", list)[:20] if isinstance(k, str))
                raise SubmissionFailure(
                    "missing", f"{name} returned a mapping without the key {key!r} (its keys: {keys or 'none'})"
                )
            kind = field(reply, "type", str)
            if kind == "NoneType":
                callables = ", ".join(sorted(self.defined)) or "none"
                raise SubmissionFailure(
                    "missing",
                    f"the submission does not define {function}(): define it at the top level of the file "
                    f"(functions it defines: {callables})",
                )
            raise SubmissionFailure("missing", f"{function} in the submission is a {kind}, not a function")
        if status == "raised":
            raise self.raised(name, reply)
        if status == "bad-result":
            kind = field(reply, "type", str)
            if reply.get("wanted") == "mapping":
                message = f"{name} returned {kind}; expected a mapping (such as a dict) with the key {key!r}"
            elif "dtype" in reply:
                dtype = field(reply, "dtype", str)
                message = f"{name} returned a {kind} of dtype {dtype}, which cannot be checked: return real numbers"
            else:
                message = f"{name} returned {kind}; expected a torch.Tensor (or a numpy.ndarray)"
            raise SubmissionFailure("error", message)
        if status == "mutated":
            names = field(reply, "names", list)
            which = []
            for index in field(reply, "indices", list):
                if not isinstance(index, int) or isinstance(index, bool):
                    raise Garbled("a non-integer argument index")
                label = names[index] if 0 <= index < len(names) and isinstance(names[index], str) else None
                which.append(f"argument {index + 1}" + (f" ({label})" if label else ""))
            raise SubmissionFailure(
                "mutated-input",
                f"{name} changed its input {', '.join(which)} in place: gradient functions must leave their inputs "
                "as they were (write `x = x * 2`, not `x *= 2`, `x.mul_(2)` or `x[...] = …`)",
            )
        if status == "bad-device":
            raise InvalidArgument(f"device={device!r} cannot be used in the worker: {field(reply, 'message', str)}")
        if status == "internal":
            raise SubmissionFailure("error", f"the worker failed while calling {name}: {reply.get('message')}")
        raise Garbled(f"unexpected status {status!r}")

    def raised(self, name: str, reply: dict[str, Any]) -> SubmissionFailure:
        kind, where = field(reply, "kind", str), self.where(reply)
        if kind == "forbidden":
            return SubmissionFailure("forbidden", f"{name}: {forbidden_message(field(reply, 'api', str), where)}")
        if kind == "exit":
            code = field(reply, "message", str)
            return SubmissionFailure(
                "error",
                f"{name} tried to end the program (SystemExit({code})){where}: a gradient function must return its "
                "result, not exit",
            )
        if kind == "memory":
            return SubmissionFailure(
                "memory",
                f"{name} ran out of memory{where}: it needs more than the {self._limits.memory_mb} MB a "
                f"submission may use ({field(reply, 'type', str)}: {field(reply, 'message', str)})",
            )
        if kind != "exception":
            raise Garbled(f"unexpected failure kind {kind!r}")
        return SubmissionFailure(
            "error",
            f"{name} raised {field(reply, 'type', str)}: {field(reply, 'message', str)}{where}{self.hint(reply)}",
        )

    def where(self, reply: dict[str, Any]) -> str:
        """Where the innermost submission line of a failure is: " at cell 3, line 2 (in grad_W1): `…`"."""
        found = frames(field(reply, "frames", list))
        if not found:
            return ""
        lineno, function = found[-1]
        text = self._source.line(lineno)
        context = f" (in {function})" if function != "<module>" else ""
        return f" at {self._source.locate(lineno)}{context}" + (f": `{text}`" if text else "")

    def hint(self, reply: dict[str, Any]) -> str:
        name = reply.get("name")
        lineno = self._source.skipped_binding(name) if isinstance(name, str) else None
        if lineno is None:
            return ""
        return (
            f"\n(note: `{name}` is set at {self._source.locate(lineno)}, which was not run: with --definitions-only, "
            "a notebook's imports, functions, classes and constant assignments are all that runs; leave that option "
            "out to run every cell)"
        )

    def cell_notes(self, notes: object) -> tuple[tuple[str, ...], int]:
        """The notebook cells the worker stopped, in words, and how many refused calls they made in all."""
        if not isinstance(notes, list):
            raise Garbled("cell notes that are not a list")
        numbers = {number for number, _, _ in self._source.run_cells}
        words, refusals = [], 0
        for note in notes:
            if not isinstance(note, dict):
                raise Garbled("a cell note that is not a record")
            number, count = field(note, "cell", int), field(note, "refusals", int)
            if number not in numbers or count < 0:
                raise Garbled(f"a note on cell {number!r}, which was not run")
            refusals += count
            words.append(f"cell {number} {self.stopped(note)}; the cells after it still ran")
        return tuple(words), refusals

    def stopped(self, note: dict[str, Any]) -> str:
        """What stopped a notebook cell: "called Tensor.backward at line 6: `loss.backward()`, which …"."""
        outcome = field(note, "outcome", str)
        if outcome == "cut-off":
            return f"ran longer than {CELL_SECONDS:g} s and was cut off"
        found = frames(field(note, "frames", list))
        where = ""
        if found:
            lineno = found[-1][0]
            text = self._source.line(lineno)
            cell, line = self._source.position(lineno)
            # In a function an earlier cell defined, the line is named with its own cell.
            place = f"line {line}" if cell == field(note, "cell", int) else self._source.locate(lineno)
            where = f" at {place}" + (f": `{text}`" if text else "")
        if outcome == "forbidden":
            return f"called {field(note, 'api', str)}{where}, which the grader does not allow"
        if outcome != "raised":
            raise Garbled(f"unexpected cell outcome {outcome!r}")
        kind = field(note, "kind", str)
        if kind == "exit":
            return f"tried to end the program (SystemExit({field(note, 'message', str)})){where}"
        return f"raised {field(note, 'type', str)}: {field(note, 'message', str)}{where}"



def death(what: str, facts: dict[str, Any], limits: Limits, advice: str) -> SubmissionFailure:
    """How a worker that vanished ended ({"signal": n} or {"exit": n} from the server), as a failure."""
    number, code = facts.get("signal"), facts.get("exit")
    if number == signal.SIGXCPU:
        return SubmissionFailure(
            "timeout", f"{what} used up the worker's CPU-time limit of {limits.cpu_seconds} s and was stopped"
        )
    if isinstance(number, int):
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        described = _SIGNALS.get(number)
        how = f"the worker process died with {name}" + (f" ({described})" if described else "")
    elif isinstance(code, int):
        how = f"the worker process exited with status {code} (os._exit, or a crash in native code)"
    elif not facts:
        return SubmissionFailure(
            "error",
            f"{what}: the worker process was lost with the process that starts workers, which is not necessarily "
            "the submission's fault: check it again",
        )
    else:
        how = "the worker process ended unexpectedly"
    return SubmissionFailure("error", f"{what}: {how}; {advice}")


def forbidden_message(api: str, where: str) -> str:
    if api.startswith("import "):
        return (
            f"`{api}`{where} is forbidden: a submission may not use the checker or its reference models; "
            "derive the gradients by hand"
        )
    return (
        f"{api} was used{where}, which is forbidden: analytic gradients must be derived by hand, not computed "
        "with autograd"
    )
