"""Command line: run a tuning method on Ray Tune and write a ranked report.

    python run_search.py --method optuna                      # klue/roberta-base on KLUE-STS (Hub, GPUs)
    python run_search.py --method optuna --profile cpu        # e5-small-ko on KorSTS, offline CPU profile
    python run_search.py --method optuna --smoke-test         # a test-size model, seconds
    python run_search.py report runs/<name>                   # rebuild a report from storage

Precedence: dataclass defaults < search-space YAML (--space / --profile) < flags.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent
SPACES = REPO / "search_spaces"
PRESETS = ("korsts", "klue-sts")


def parse_args(argv: list[str]) -> argparse.Namespace:
    import inspect

    from tuning.settings import SECTIONS, config_flags

    p = argparse.ArgumentParser(
        prog="run_search.py",
        # The generated usage would list every flag of every section.
        usage="%(prog)s [--method METHOD] [--profile PROFILE | --space FILE] [--smoke-test] [flags below]",
        description="Hyperparameter search for Korean STS fine-tuning on Ray Tune.\nPrecedence: defaults "
        "< search-space file < flags; a flag's value is read as in the file\n(3e-5, true, null, {a: b}).",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's lists stay lists
    )
    p.add_argument(
        "--method",
        default="optuna",
        metavar="METHOD",
        help="tuning method, see `methods` below (default: optuna)",
    )
    p.add_argument(
        "--space", help="search-space YAML file (default: search_spaces/[<profile>/]<method>.yaml)"
    )
    p.add_argument("--profile", help="a folder of search_spaces/ to take <method>.yaml from, e.g. `cpu`")
    p.add_argument(
        "--data", help=f"a preset ({', '.join(PRESETS)}) or a training file (KLUE JSON, KorSTS TSV, CSV)"
    )
    p.add_argument("--storage", default="runs", help="root folder of results (default: ./runs)")
    p.add_argument("--name", help="experiment folder under --storage (default: <space name>-<timestamp>)")
    p.add_argument(
        "--address", help="an existing Ray cluster (`auto`, `ray://host:10001`); default: start Ray here"
    )
    p.add_argument(
        "--resume", metavar="DIR", help="continue an interrupted experiment <storage>/<name> where it stopped"
    )
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="test-size model built in code, a few pairs, 2 trials (flags given with it still apply)",
    )

    # Every config field is a flag, generated from its dataclass: one group per section. A flag's
    # text is kept as typed; flag_overrides reads it as a YAML value of the field.
    groups: dict[str | None, Any] = {None: p}
    for section, cls in SECTIONS.items():
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0]
        groups[section] = p.add_argument_group(
            f"{section} (overrides `{section}:` of the search-space file)", help_text(doc)
        )
    for flag in config_flags():
        switch = {"nargs": "?", "const": "true"} if flag.switch else {}
        groups[flag.section].add_argument(
            *flag.names, dest=flag.dest, metavar=flag.metavar, help=help_text(flag.help), **switch
        )
    args = p.parse_args(argv)
    args.from_experiment = getattr(args, "search.from_experiment")  # build_experiment checks --from
    return args


def help_text(doc: str) -> str:
    """A docstring as ``--help`` text: ``code`` as `code`, None as null; help is a %-format."""
    return doc.replace("``", "`").replace("`None`", "`null`").replace("%", "%%")


def epilog() -> str:
    """The methods, each with its line, and the subcommands, for ``--help``."""
    import inspect

    from tuning.methods import METHODS

    def line(text: str) -> str:
        return text.replace("``", "`").strip()

    methods = [
        f"  {name:<10} {line((inspect.getdoc(f) or '').splitlines()[0])}" for name, f in METHODS.items()
    ]
    return "\n".join(
        [
            "methods (--method):",
            *methods,
            "",
            "subcommands:",
            "  report DIR          rebuild <storage>/<name>/report.md from storage",
            "  serve DIR           serve an exported model (<storage>/<name>/best_model): JSON API and a page",
            "                      (`run_search.py serve --help` lists its flags)",
        ]
    )


def space_file(args: argparse.Namespace) -> Path:
    """The search-space file the flags name."""
    if args.space:
        return Path(args.space)
    folder = SPACES / args.profile if args.profile else SPACES
    return folder / f"{args.method}.yaml"


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags a user gave, as ``section.field`` overrides of the YAML file.

    Each value is read as the same text in the YAML file would be (``3e-5``, ``true``, ``20m``);
    the field rules are checked later, with the file's values, by ``validate``.

    Raises:
        ConfigError: naming each flag whose value is not of its field's type.
    """
    from tuning.settings import ConfigError, config_flags, flag_value

    out: dict[str, Any] = {}
    if args.data:
        if args.data in PRESETS:
            out["data.source"] = args.data
        else:
            out.update(
                {"data.source": "files", "data.train": args.data, "data.validation": None, "data.test": None}
            )
            out["data.extra_test"] = {}
    problems: dict[str, None] = {}  # ordered and once: --seed reports its value once, not per field
    # Shared short flags (--seed) first, so a field's own flag (--training.seed) wins over them.
    for flag in sorted(config_flags(), key=lambda f: len(f.keys) == 1):
        text = getattr(args, flag.dest)
        if text is None:
            continue
        for key in flag.keys:
            value, problem = flag_value(key, text)
            if problem:  # "batch_size must be ..." -> "--training.batch_size must be ..."
                problems[flag.label + problem.removeprefix(key.partition(".")[2])] = None
            out[key] = value
    if problems:
        raise ConfigError("\n".join(problems))
    if out.get("search.from_experiment"):
        out["search.from_experiment"] = str(Path(out["search.from_experiment"]).resolve())
    return out


def build_experiment(args: argparse.Namespace) -> Any:
    """Defaults < YAML < flags, validated once (every problem in one message); the machine it
    runs on is kept in ``args.machine`` for :func:`run`."""
    from tuning.experiment import build
    from tuning.settings import ConfigError

    if args.from_experiment and args.method != "seeds":
        raise ConfigError(
            f"--from repeats a finished experiment's top configurations: use it with --method seeds, not {args.method}."
        )
    path = space_file(args)
    if args.profile and not path.is_file():
        profiles = sorted(d.name for d in SPACES.iterdir() if d.is_dir())
        raise ConfigError(f"no {path.name} in profile {args.profile!r} ({path}); profiles: {profiles}.")
    overrides = flag_overrides(args)
    exp, args.machine = build(
        path,
        args.method,
        overrides,
        smoke=args.smoke_test,
        storage=args.storage,
        name=args.name,
        address=args.address,
    )
    return exp


def run(args: argparse.Namespace) -> int:
    """A new experiment (or ``--resume``'s) run to its end; the exit status."""
    from reports import write_report
    from tuning.experiment import Experiment, Stopped
    from tuning.store import EXPERIMENT_FILE

    if args.resume:
        experiment = Experiment.resume(Path(args.resume), shown=args.resume)
        if experiment is None:
            return 0
    else:
        exp = build_experiment(args)
        try:
            experiment = Experiment.start(exp, args.machine, " ".join(["python", *sys.argv]))
        except KeyboardInterrupt:  # once experiment.json is written, a stop leaves it resumable
            if not Path(exp.experiment_dir, EXPERIMENT_FILE).is_file():
                raise
            return stopped(Path(exp.experiment_dir), args)
    try:  # from here on the experiment is on disk: a stop signal leaves it resumable
        return experiment.run(write_report, args.address, on_ray_started=STOP.install)
    except Stopped as err:
        STOP.signum = STOP.signum or err.signum
        return stopped(experiment.dir, args)
    except KeyboardInterrupt:  # a stop signal handled before the search's own try
        return stopped(experiment.dir, args)


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM stop a search cleanly; a second one stops it at once.

    The first signal during a Tune run asks Tune to stop (it saves its state, as on Ctrl-C);
    anywhere else it raises ``KeyboardInterrupt``. Either way the experiment stays unfinished,
    nothing unfinished is exported, and the exit status is 128 + the signal (130, 143).
    Tune's own SIGINT handler is turned off (``TUNE_DISABLE_SIGINT_HANDLER``): it would not see
    SIGTERM, and it leaves no trace that a stop was asked for. Installed again once Ray runs:
    Ray's core worker replaces the SIGTERM handler with one that aborts.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        from tuning.methods import request_stop

        if self.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now, skipping Tune's last save
        self.signum = signum
        request_stop()
        print(
            f"\n[run_search] {signal.Signals(signum).name}: stopping the search (saving its state); "
            "send it again to stop at once.",
            file=sys.stderr,
            flush=True,
        )
        tune_stop = signal.getsignal(signal.SIGUSR1)  # installed by Tune while a stage runs
        if callable(tune_stop):
            tune_stop(signum, frame)
        else:
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


STOP = StopSignals()


def resume_command(exp_dir: Path, args: argparse.Namespace) -> str:
    """The exact command that continues ``exp_dir``."""
    command = [sys.executable, str(REPO / "run_search.py"), "--resume", str(exp_dir)]
    if args.address:
        command += ["--address", args.address]
    return shlex.join(command)


def stopped(exp_dir: Path, args: argparse.Namespace) -> int:
    """After a stop signal: say that ``exp_dir`` is unfinished and how to continue it."""
    print(
        f"[run_search] stopped: {exp_dir} is unfinished (finished trials and checkpoints are kept; "
        f"nothing was exported). Continue it with:\n  {resume_command(exp_dir, args)}",
        file=sys.stderr,
        flush=True,
    )
    return STOP.exit_code


class Terminal(logging.Handler):
    """The driver's log records as the terminal has always shown them: information on stdout as
    ``[run_search] ...``, warnings on stderr as ``warning: ...``, errors on stderr as
    ``[run_search] ...``. The streams are looked up at each record (tests redirect them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.ERROR:
                stream, line = sys.stderr, f"[run_search] {message}"
            elif record.levelno >= logging.WARNING:
                stream, line = sys.stderr, f"warning: {message}"
            else:
                stream, line = sys.stdout, f"[run_search] {message}"
            print(line, file=stream, flush=True)
        except Exception:  # a closed stream must not stop a search
            self.handleError(record)


def show_driver_messages() -> None:
    """Print the ``tuning`` driver's messages (INFO and up) on the terminal, once."""
    logger = logging.getLogger("tuning")
    logger.setLevel(logging.INFO)
    logger.propagate = False  # Ray configures the root logger in its workers; ours stay ours
    if not any(isinstance(h, Terminal) for h in logger.handlers):
        logger.addHandler(Terminal())


def report_command(argv: list[str]) -> int:
    from reports import report_with_problems

    p = argparse.ArgumentParser(prog="run_search.py report", description="Rebuild report.md from storage.")
    p.add_argument("experiment", help="an experiment folder, <storage>/<name>")
    args = p.parse_args(argv)
    from tuning import ray_session, store
    from tuning.settings import ConfigError

    exp_dir = Path(args.experiment).resolve()
    if not (exp_dir / store.EXPERIMENT_FILE).is_file():
        what = "does not exist" if not exp_dir.exists() else f"has no {store.EXPERIMENT_FILE}"
        raise ConfigError(
            f"report {args.experiment}: {exp_dir} {what}; pass an experiment folder <storage>/<name> "
            "as written by run_search.py."
        )
    driver = ray_session.running_driver(exp_dir)
    if driver:  # a report now would call a search that is still running finished
        raise ConfigError(
            f"report {args.experiment}: process {driver} is still running this experiment, and it "
            "writes the report itself when it ends; run `report` after that (or stop it: "
            f"kill {driver}; then `--resume` continues it)."
        )
    path, unreadable = report_with_problems(exp_dir)
    print(path)
    if unreadable:  # written, but not the whole truth: say what is missing, and fail
        print(
            f"error: {path} is written, but {len(unreadable)} file{'s' if len(unreadable) > 1 else ''} "
            f"could not be read (named at its top): {'; '.join(unreadable)}.",
            file=sys.stderr,
        )
        return 2
    return 0


def serve_command(argv: list[str]) -> int:
    from dataclasses import fields

    from tuning.serving import ServeSettings, serve
    from tuning.serving.app import flag_name
    from tuning.settings import field_docs, field_kinds
    from tuning.settings.flags import METAVARS

    p = argparse.ArgumentParser(
        prog="run_search.py serve",
        description="Serve an exported best model: a similarity JSON API and a web page.",
    )
    p.add_argument("model_dir", nargs="?", help="the model folder, <storage>/<name>/best_model")
    p.add_argument("--model", help="the model folder (instead of the positional argument)")
    # Every setting is a flag, generated from ServeSettings: its docstring is the help.
    defaults, docs, kinds = ServeSettings(), field_docs(ServeSettings), field_kinds(ServeSettings)
    for f in fields(ServeSettings):
        default = getattr(defaults, f.name)
        p.add_argument(
            flag_name(f.name),
            dest=f.name,
            type=kinds[f.name].base,
            default=default,
            metavar=METAVARS[kinds[f.name].base],
            help=f"{help_text(docs.get(f.name, ''))} (default: {default:g})"
            if isinstance(default, float)
            else f"{help_text(docs.get(f.name, ''))} (default: {default})",
        )
    args = p.parse_args(argv)
    if bool(args.model_dir) == bool(args.model):
        p.error("give the model folder once: `serve DIR` or `serve --model DIR`.")
    settings = ServeSettings(**{f.name: getattr(args, f.name) for f in fields(ServeSettings)})
    return serve(args.model_dir or args.model, settings)


COMMANDS = {"report": report_command, "serve": serve_command}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from tuning.data import DataError
    from tuning.model import ModelError
    from tuning.settings import ConfigError
    from tuning.store import StorageError

    where = argv[1] if argv[:1] == ["report"] and len(argv) > 1 else None  # the folder in use
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        STOP.install()
        show_driver_messages()
        args = parse_args(argv)
        where = args.resume or args.storage
        return run(args)
    except (ConfigError, DataError, ModelError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {storage_problem(err, where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a stop signal before the search started: nothing ran
        print("interrupted before the search started; nothing was run.", file=sys.stderr)
        return STOP.exit_code


# What to do about a file-system error, by errno.
STORAGE_FIXES = {
    errno.ENOSPC: "free space there, or pass --storage on a disk with room; --resume continues the run",
    errno.EDQUOT: "free space there, or pass --storage on a disk with room; --resume continues the run",
    errno.EROFS: "pass a --storage folder on a writable file system",
    errno.EACCES: "pass a --storage folder you may write to",
    errno.EPERM: "pass a --storage folder you may write to",
    errno.ENOTDIR: "--storage must name a folder, not a file",
    errno.EEXIST: "a file or folder of that name is in the way; pass another --storage or --name",
}


def storage_problem(err: OSError, where: str | None) -> str:
    """One line for a file-system error: what failed, on which path, and the fix.

    Errors raised inside Ray (a trial's checkpoint upload) name no file: ``where`` (the storage
    or experiment folder in use) is named instead.
    """
    if err.strerror is None and err.filename is None and str(err):  # a sentence of its own
        return str(err)
    path = err.filename or (f"under {Path(where).resolve()}" if where else None)
    fix = STORAGE_FIXES.get(err.errno or 0)
    what = (err.strerror or str(err).splitlines()[-1]).split(". Detail:")[0]
    return what + (f": {path}" if path else "") + (f" ({fix})." if fix else ".")


if __name__ == "__main__":
    sys.exit(main())
