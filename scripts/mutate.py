#!/usr/bin/env python3
"""Mutation testing of the functions that enforce a security rule (issue 11).

A small AST mutator of our own rather than mutmut or cosmic-ray: both mutate whole modules
(mutmut 3 rewrites every function into trampolines inside its own mutants/ copy, which the
editable install's harness/ -> mcim_hil mapping never imports; cosmic-ray mutates in place,
module-wide, and needs its own session database). Here a mutant is one change inside one
listed function, and it runs only the tests listed for that function.

The package is imported once; each mutant runs in a forked child that swaps the mutated
function's code object in (the module mapping does not matter, and the worktree's files are
never written: an interrupted run leaves nothing behind) and runs the listed tests with -x
(the first failure kills the mutant) and a timeout (a hang counts as killed, reported apart).

Config: scripts/mutate.toml ([[target]] file, functions, tests). Known equivalent mutants:
scripts/mutate-equivalent.txt, one id per line with its reason. Exit status 1 when a mutant
survives that the file does not explain.
"""

from __future__ import annotations

import argparse
import ast
import atexit
import copy
import importlib
import os
import signal
import sys
import tempfile
import time
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# where each source folder lives inside the import package (pyproject.toml package-dir)
PACKAGE_DIRS = {"harness": "mcim_hil", "drivers": "mcim_hil/drivers", "fixtures": "mcim_hil/fixtures"}

_NEGATE = {ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.Lt: [ast.LtE, ast.GtE], ast.LtE: [ast.Lt, ast.Gt],
           ast.Gt: [ast.GtE, ast.LtE], ast.GtE: [ast.Gt, ast.Lt], ast.In: [ast.NotIn], ast.NotIn: [ast.In],
           ast.Is: [ast.IsNot], ast.IsNot: [ast.Is]}


@dataclass
class Target:
    file: str
    functions: list[str]
    tests: list[str]


@dataclass
class Mutant:
    file: str
    function: str
    line: int
    what: str          # e.g. "'a < b' -> 'a <= b'"
    source: str        # the whole mutated file
    tests: list[str]
    ident: str = ""    # file::function::what[#n], stable across unrelated edits (no line number)
    outcome: str = ""  # killed, timeout, survived, equivalent, error
    detail: str = ""


# --------------------------------------------------------------------------- generating mutants

def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[prefix + node.name] = node
    walk(tree.body, "")
    return found


class _Source:
    """The file's text with its line starts, to find a node's text fast (ast.get_source_segment
    splits the whole file on every call)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def bounds(self, node: ast.AST) -> tuple[int, int]:
        return (self.starts[node.lineno - 1] + _col(self.lines[node.lineno - 1], node.col_offset),
                self.starts[node.end_lineno - 1] + _col(self.lines[node.end_lineno - 1], node.end_col_offset))

    def __call__(self, node: ast.AST | None) -> str:
        if node is None or getattr(node, "end_col_offset", None) is None:
            return ""
        start, end = self.bounds(node)
        return self.text[start:end]


def _col(line: str, byte_offset: int) -> int:
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="replace"))


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _in_docstring(func: ast.AST, node: ast.AST) -> bool:
    body = getattr(func, "body", [])
    return bool(body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and body[0] is node


def mutants_of(target: Target, only: list[str] = ()) -> list[Mutant]:
    path = ROOT / target.file
    text = path.read_text(encoding="utf-8")
    src = _Source(text)
    functions = _functions(ast.parse(text))
    out: list[Mutant] = []
    seen: dict[str, int] = {}
    for name in target.functions:
        func = functions.get(name)
        if func is None:
            raise SystemExit(f"mutate: {target.file}: no function {name} (scripts/mutate.toml needs updating)")
        if only and not any(o in f"{target.file}::{name}" for o in only):
            continue
        for node, replacement, what in _changes(func, src):
            start, end = src.bounds(node)
            if text[start:end] == replacement:
                continue
            mutated = text[:start] + replacement + text[end:]
            try:
                compile(mutated, target.file, "exec", dont_inherit=True)
            except SyntaxError:
                continue
            key = f"{target.file}::{name}::{what}"
            seen[key] = seen.get(key, 0) + 1
            ident = key if seen[key] == 1 else f"{key}#{seen[key]}"
            out.append(Mutant(target.file, name, node.lineno, what, mutated, target.tests, ident))
    return out


def _changes(func: ast.AST, src: _Source):
    """(node to replace, replacement text, description) for every mutation inside ``func``."""
    in_fstrings = {id(inner) for node in ast.walk(func) if isinstance(node, ast.JoinedStr)
                   for inner in ast.walk(node)}  # message text: not a rule
    for stmt in func.body:
        if _in_docstring(func, stmt):
            continue
        for node in ast.walk(stmt):
            if id(node) in in_fstrings:
                continue
            source = src(node)
            if isinstance(node, ast.Compare):
                for i, op in enumerate(node.ops):
                    for new_op in _NEGATE.get(type(op), []):
                        changed = copy.deepcopy(node)
                        changed.ops[i] = new_op()
                        new = ast.unparse(changed)
                        yield node, f"({new})", f"{_short(source)!r} -> {_short(new)!r}"
                for operand in [node.left, *node.comparators]:
                    if isinstance(operand, ast.Constant) and type(operand.value) is int:
                        for delta in (1, -1):
                            value = operand.value + delta
                            yield operand, repr(value), f"{_short(source)!r}: {operand.value} -> {value}"
                    if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) and len(operand.elts) > 1:
                        yield from _drop_elements(operand, src)
            elif isinstance(node, ast.BoolOp):
                other = "or" if isinstance(node.op, ast.And) else "and"
                changed = ast.BoolOp(op=ast.Or() if other == "or" else ast.And(), values=node.values)
                yield node, f"({ast.unparse(changed)})", f"{_short(source)!r}: and/or -> {other}"
                for i, value in enumerate(node.values):
                    rest = node.values[:i] + node.values[i + 1:]
                    kept = rest[0] if len(rest) == 1 else ast.BoolOp(op=node.op, values=rest)
                    yield node, f"({ast.unparse(kept)})", \
                        f"{_short(source)!r}: drop {_short(src(value))!r}"
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                operand = src(node.operand) or ast.unparse(node.operand)
                yield node, f"({operand})", f"{_short(source)!r} -> drop 'not'"
            elif isinstance(node, (ast.If, ast.While, ast.IfExp)):
                test = src(node.test)
                yield node.test, "False", f"condition {_short(test)!r} -> False"
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                yield node, "pass", f"delete call {_short(source)!r}"
            elif isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, bool):
                yield node.value, repr(not node.value.value), f"{_short(source)!r} -> {not node.value.value}"
            elif isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Set)) \
                    and len(node.value.elts) > 1:
                yield from _drop_elements(node.value, src)
            elif isinstance(node, ast.For) and isinstance(node.iter, (ast.Tuple, ast.List)) \
                    and len(node.iter.elts) > 1:
                yield from _drop_elements(node.iter, src)


def _drop_elements(literal: ast.Tuple | ast.List | ast.Set, src: _Source):
    source = src(literal)
    for i, element in enumerate(literal.elts):
        changed = copy.deepcopy(literal)
        del changed.elts[i]
        new = ast.unparse(changed)
        if isinstance(literal, ast.Tuple) and len(changed.elts) == 1:
            new = f"({ast.unparse(changed.elts[0])},)"
        yield literal, new, f"{_short(source)!r}: drop {_short(src(element))!r}"


# --------------------------------------------------------------------------- running them

def _module_name(file: str) -> str:
    folder, _, rest = file.partition("/")
    return ".".join([*PACKAGE_DIRS[folder].split("/"), *Path(rest).with_suffix("").parts])


def _code_named(code: types.CodeType, qualname: str) -> types.CodeType | None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if const.co_qualname == qualname:
                return const
            found = _code_named(const, qualname)
            if found is not None:
                return found
    return None


def _function_object(module: types.ModuleType, qualname: str) -> types.FunctionType:
    obj: object = module
    for part in qualname.split("."):
        obj = vars(obj)[part]
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    assert isinstance(obj, types.FunctionType), qualname
    return obj


class Runner:
    """Runs pytest in forked children of this (warm) process: the package is imported once here;
    a child swaps the mutated function's code object in, runs the tests and exits. The worktree's
    files are never written, so an interrupted run leaves nothing behind."""

    def __init__(self, workdir: Path, jobs: int) -> None:
        self.workdir = workdir
        self.jobs = max(1, jobs)

    def _child(self, mutant: Mutant | None, tests: list[str], log: Path) -> None:
        os.setpgrp()  # a timeout kills the child and what it started (swtpm, a virtual card)
        atexit._clear()  # the parent's exit handlers are the parent's; run only the child's own
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(self.workdir)  # per-test artifacts land here, not in the worktree
        code = 4
        try:
            if mutant is not None:
                module = importlib.import_module(_module_name(mutant.file))
                compiled = compile(mutant.source, str(ROOT / mutant.file), "exec")
                new = _code_named(compiled, mutant.function)
                _function_object(module, mutant.function).__code__ = new
            import pytest
            code = int(pytest.main(["-q", "-x", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=",
                                    "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                                    *[_absolute(t) for t in tests]]))
        except BaseException as exc:  # a mutant that breaks the import counts as killed
            print(f"ERROR mutate child: {type(exc).__name__}: {exc}")
            code = 1
        finally:
            atexit._run_exitfuncs()  # temp dirs the tests registered for removal
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def run(self, jobs: list[tuple[Mutant | None, list[str], float]]) -> list[tuple[int | None, str]]:
        """Run (mutant or None, tests, timeout) jobs, ``self.jobs`` at a time; (exit code or None
        on timeout, first FAILED/ERROR line) for each, in order."""
        results: list[tuple[int | None, str]] = [(None, "")] * len(jobs)
        running: dict[int, tuple[int, float, Path]] = {}  # pid -> (index, deadline, log)
        pending = list(enumerate(jobs))
        while pending or running:
            while pending and len(running) < self.jobs:
                index, (mutant, tests, timeout) = pending.pop(0)
                log = self.workdir / f"job-{index}.log"
                pid = os.fork()
                if pid == 0:
                    self._child(mutant, tests, log)
                running[pid] = (index, time.monotonic() + timeout, log)
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                now = time.monotonic()
                for child, (index, deadline, log) in list(running.items()):
                    if now > deadline:
                        os.killpg(child, signal.SIGKILL)
                        os.waitpid(child, 0)
                        del running[child]
                        results[index] = (None, "timeout")
                        self._done(index, jobs, results)
                time.sleep(0.02)
                continue
            if pid not in running:
                continue
            index, _, log = running.pop(pid)
            try:
                os.killpg(pid, signal.SIGKILL)  # anything the tests left running in its group
            except ProcessLookupError:
                pass
            text = log.read_text(errors="replace") if log.exists() else ""
            lines = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
            results[index] = (os.waitstatus_to_exitcode(status), (lines or text.strip().splitlines()[-1:] or [""])[0])
            log.unlink(missing_ok=True)
            self._done(index, jobs, results)
        return results

    def _done(self, index: int, jobs: list, results: list) -> None:
        mutant = jobs[index][0]
        if mutant is not None:
            code, detail = results[index]
            mutant.outcome = ("timeout" if code is None else "killed" if code in (1, 2, 3)
                              else "survived" if code == 0 else "error")
            mutant.detail = detail
            if mutant.outcome in ("survived", "error"):
                print(f"  {mutant.outcome} {mutant.file}:{mutant.line} {mutant.function}: {mutant.what}", flush=True)


def _absolute(test: str) -> str:
    if test.startswith("-"):
        return test
    return str(ROOT / test)


def load_targets(config: Path) -> list[Target]:
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    return [Target(t["file"], list(t["functions"]), list(t["tests"])) for t in data["target"]]


def load_equivalents(path: Path) -> dict[str, str]:
    """id -> reason, from lines ``<id>  # <reason>`` (blank lines and # comments ignored)."""
    found: dict[str, str] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        ident, _, reason = line.partition("  # ")
        if not reason.strip():
            raise SystemExit(f"mutate: {path.name}: an equivalent mutant needs its reason: {line!r}")
        found[ident.strip()] = reason.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "scripts" / "mutate.toml")
    parser.add_argument("--equivalents", type=Path, default=ROOT / "scripts" / "mutate-equivalent.txt")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="workers (default 2)")
    parser.add_argument("--only", action="append", default=[],
                        help="FILE or FILE::FUNCTION substring to restrict to (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants (ids) and run nothing")
    parser.add_argument("--ids", type=Path, help="run only the mutants whose ids this file lists (one a line), "
                                                 "e.g. the survivors of an earlier run after adding tests")
    args = parser.parse_args(argv)

    targets = load_targets(args.config)
    equivalents = load_equivalents(args.equivalents)
    mutants = [m for t in targets for m in mutants_of(t, args.only)]
    if args.ids:
        wanted = {line.strip() for line in args.ids.read_text(encoding="utf-8").splitlines() if line.strip()}
        mutants = [m for m in mutants if m.ident in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.file}:{m.line}  {m.ident}")
        print(f"{len(mutants)} mutants")
        return 0
    started = time.monotonic()
    for module in sorted({_module_name(m.file) for m in mutants}):
        importlib.import_module(module)  # once, in this process: the children inherit them
    # the swtpm identity that Swtpm(shared_identity=True) copies, manufactured once for all children
    from mcim_hil.emulators import swtpm
    swtpm._shared_template()
    with tempfile.TemporaryDirectory(prefix="mcim-hil-mutate-") as base:
        runner = Runner(Path(base), args.jobs)
        # the unmutated tests must pass first; their time sets each mutant's timeout
        suites = sorted({tuple(m.tests) for m in mutants})
        timeouts: dict[tuple[str, ...], float] = {}
        broken: set[tuple[str, ...]] = set()
        for suite in suites:
            t0 = time.monotonic()
            ((code, detail),) = runner.run([(None, list(suite), 600.0)])
            if code != 0:  # e.g. every vpcd slot taken by other sessions: those mutants are not run
                print(f"mutate: the unmutated tests fail, their mutants are not run: {' '.join(suite)}\n"
                      f"  {detail}", flush=True)
                broken.add(suite)
            timeouts[suite] = 3 * (time.monotonic() - t0) + 20
        for m in mutants:
            if tuple(m.tests) in broken:
                m.outcome, m.detail = "not run", "the unmutated tests fail"
        print(f"{len(mutants)} mutants in {len({(m.file, m.function) for m in mutants})} functions, "
              f"{runner.jobs} at a time; baseline {time.monotonic() - started:.0f} s", flush=True)
        runner.run([(m, m.tests, timeouts[tuple(m.tests)]) for m in mutants if m.outcome != "not run"])

    for m in mutants:
        if m.outcome == "survived" and m.ident in equivalents:
            reason = equivalents[m.ident]
            # "BLOCKED: ..." marks a mutant no test can kill until a named defect is fixed: explained, not equivalent
            m.outcome, m.detail = ("blocked" if reason.startswith("BLOCKED") else "equivalent"), reason
    counts = {k: sum(m.outcome == k for m in mutants)
              for k in ("killed", "timeout", "survived", "equivalent", "blocked", "error", "not run")}
    stale = sorted(set(equivalents) - {m.ident for m in mutants if m.outcome in ("equivalent", "blocked")}) \
        if not (args.only or args.ids) else []
    elapsed = time.monotonic() - started
    print()
    for m in mutants:
        if m.outcome in ("survived", "error"):
            print(f"{m.outcome.upper():9} {m.file}:{m.line} {m.function}: {m.what}\n          id: {m.ident}")
    for m in mutants:
        if m.outcome in ("equivalent", "blocked"):
            print(f"{m.outcome.upper():9} {m.file}:{m.line} {m.function}: {m.what} ({m.detail})")
    for ident in stale:
        print(f"STALE     {args.equivalents.name}: {ident} (killed, or no such mutant any more)")
    tried = len(mutants) - counts["not run"]
    print(f"\nmutants tried {tried}, killed {counts['killed'] + counts['timeout']} "
          f"(of which timeouts {counts['timeout']}), survived {counts['survived']} unexplained, "
          f"equivalent {counts['equivalent']}, blocked by a known defect {counts['blocked']}, "
          f"errors {counts['error']}, not run {counts['not run']}; {elapsed:.0f} s")
    return 1 if counts["survived"] or counts["error"] else 2 if counts["not run"] else 0


if __name__ == "__main__":
    sys.exit(main())
