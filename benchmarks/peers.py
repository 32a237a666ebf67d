"""Peers: the same search through this tool and through the tools people use instead.

    python -m benchmarks peers --profile cpu    # the CPU demo's search (search_spaces/cpu/optuna.yaml), hours
    python -m benchmarks peers --quick          # a tiny model, 64 pairs, 2 trials of 2 epochs (~4 min)
    python -m benchmarks peers --peers ours st-optuna --storage runs/peers

With ``--storage`` every peer's row is kept there; a later run with the same folder reads the
rows of peers that ran the same search without an error and runs only the others, so the full
table can be measured a peer at a time.

Every peer runs the same search — the profile's model at its depth, its architecture, its
training and validation pairs (``tuning.data.load_splits`` of its data section), its search space,
number of trials, maximum epochs, training seed and searcher seed — one after another on this
machine, each in its own process (``benchmarks._peer_runs``), so wall time and memory are per
peer and a crash is one row:

- ``ours``: ``run_search.py --method optuna`` on the profile's file as it is;
- ``st-optuna``: sentence-transformers' ``SentenceTransformerTrainer.hyperparameter_search``
  (``backend="optuna"``) as sbert.net's HPO page shows it: ``model_init``, a loss init
  (``CosineSimilarityLoss``, on label / 5), an ``EmbeddingSimilarityEvaluator`` on the validation
  pairs as the objective (its Pearson), evaluation and saving ``"no"`` during the search; it keeps
  no model, so the winner is trained again and saved, and that counts;
- ``optuna-plain``: a plain Optuna study, TPE + ``MedianPruner``, whose objective trains a
  Trainer (``SentenceTransformerTrainer``, a ``transformers.Trainer``, for a bi-encoder),
  reports each epoch's validation Pearson and prunes; the best parameters are retrained;
- ``ours-cross``: this tool on the same search with ``model.architecture: cross``;
- ``hf-ray``: the Hugging Face ``Trainer.hyperparameter_search(backend="ray")`` with an
  ``ASHAScheduler`` on ``AutoModelForSequenceClassification(num_labels=1)`` (MSE on 0-5
  labels), evaluating and checkpointing each epoch; the best checkpoint is the usable model.

The first three are bi-encoders, the last two cross-encoders; time to target is counted within
each group. Measured: the wall time of the whole job to a usable model (the process from its
start: imports, search, retraining, the winner's weights on disk), trial-epochs trained, the best
validation Pearson, the winner scored alike for all (``tuning.metrics.compute_all`` on KorSTS
test and KLUE-STS dev: 5 x cosine for bi, the regression output for cross), peak memory (the
summed PSS of the peer's process tree, sampled every 0.5 s), disk its folder holds afterwards,
and time to target: when its best-so-far validation Pearson first reached the lowest best of its
group (each peer's (elapsed, best-so-far) curve is printed and, with ``--storage``, saved).

Set for every peer alike: the model, depth and ``max_length``, the pairs, the space (learning
rate, batch size, weight decay, warm-up ratio; transformers 5 takes the ratio as
``warmup_steps`` < 1), trials, epochs, training seed, searcher seed (``TPESampler(seed)``,
Ray's ``BasicVariantGenerator(random_state)``). Everything else is each tool's default, so these
differ (printed under the table too): ours runs two trials at once (1 CPU each), stops trials
with ASHA at sub-epoch rungs, trains in bf16 with frozen token embeddings (the CPU profile's
speed settings), starts TPE after a third of the trials (Optuna's default is 10) and from
KLUE's recipe, and stops at the profile's time budget; the sentence-transformers peers run one
trial at a time in fp32 with every parameter trained; ``st-optuna``'s default pruner never acts
(the docs' arguments evaluate only after training); ``hf-ray`` runs one trial per CPU with Ray's
random search and ASHA's defaults (grace 1 evaluation, reduction factor 4), and keeps every
trial's checkpoint in Ray's results, some again in the Trainer's output folder (6 of 12 in the
CPU table). Ours' wall time also holds what its job does after the search: the top-k scored on
the test splits, the untuned floor, the report. Ray's own session logs (``/tmp/ray``) are not
counted as disk left behind. ``--quick`` gives every peer the same tiny model (``builtin:tiny``'s
BERT and tokenizer, saved in Hugging Face format).

``--gpu`` (a lent GPU): the peers see it and use it as their defaults do (a whole GPU per
trial); ours packs two trials per GPU (``--gpus-per-trial 0.5``). Without it the GPU is hidden.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/peers.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import REPO, benchmark_parser, header, markdown_table

NAME = "peers"
PROFILES = {"cpu": REPO / "search_spaces" / "cpu" / "optuna.yaml"}
"""Profile -> the search-space file whose search every peer runs."""


@dataclass(frozen=True)
class Peer:
    label: str
    architecture: str


PEERS: dict[str, Peer] = {
    "ours": Peer("this tool (run_search.py --method optuna)", "bi"),
    "st-optuna": Peer("sentence-transformers hyperparameter_search (optuna)", "bi"),
    "optuna-plain": Peer("plain Optuna (TPE + MedianPruner, Trainer)", "bi"),
    "ours-cross": Peer("this tool, cross-encoder", "cross"),
    "hf-ray": Peer("HF Trainer hyperparameter_search (ray, ASHA)", "cross"),
}
"""Peer name -> what it is; each is run by ``benchmarks._peer_runs.RUNS[name]``."""


def experiment(path: Path, quick: bool) -> dict[str, Any]:
    """The search every peer runs, as the sections of a search-space file (the profile's, resolved).

    ``quick``: 64/32 pairs, 2 trials of 2 epochs, fp32, per-epoch reports, no time budget, one
    winner scored (the caller puts the tiny model's folder in ``model.name_or_path``).
    """
    from tuning.settings import load_experiment

    exp = load_experiment(path)
    if quick:
        exp.model.num_hidden_layers = None
        exp.data.train_size, exp.data.validation_size = 64, 32
        exp.training.num_epochs, exp.training.precision, exp.training.freeze_embeddings = 2, "fp32", False
        exp.training.eval_every_pairs = None
        exp.search.num_samples, exp.search.top_k, exp.search.grace_period = 2, 1, 1
        exp.search.time_budget = None
    sections = {k: asdict(getattr(exp, k)) for k in ("data", "model", "training", "search")}
    return {"name": exp.name, **sections, "space": exp.space}


def tiny_model(folder: Path, data: dict[str, Any]) -> Path:
    """``builtin:tiny`` saved in Hugging Face format (encoder + tokenizer built from the training
    pairs of the ``data`` section), so that every peer loads the same weights."""
    import torch
    from transformers import BertModel

    from tuning.data import load_splits
    from tuning.model import build_tiny_tokenizer, tiny_config
    from tuning.settings import DataConfig

    train = load_splits(DataConfig(**data))["train"]
    tokenizer = build_tiny_tokenizer(list(train["sentence1"]) + list(train["sentence2"]), 64)
    torch.manual_seed(42)
    BertModel(tiny_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def tree_pss(pid: int) -> int:
    """Summed proportional memory (PSS) of a process and its descendants (Ray's workers included),
    bytes. PSS splits each shared page among the processes mapping it, so Ray's object store and the
    libraries every worker maps count once, not once per process as summed RSS did (ours' row read
    20.1 GB on a 24 GiB machine). Where PSS is not kept (not Linux), RSS stands in."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += getattr(info, "pss", info.rss)
    return total


def run_peer(name: str, config: dict[str, Any], tmp: Path, gpu: bool, timeout: float) -> dict[str, Any]:
    """One peer in its own process; what it measured plus wall time, peak memory, disk, or its error."""
    work = tmp / name
    shutil.rmtree(work, ignore_errors=True)  # an earlier, failed attempt's folder: start afresh
    spec = {
        "peer": name,
        "experiment": config,
        "work": str(work),
        "result": str(tmp / f"{name}.json"),
        "gpu": gpu,
    }
    (tmp / f"{name}.spec.json").write_text(json.dumps(spec), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    log = tmp / f"{name}.log"
    peak, done = [0], threading.Event()
    wall_started, load_before = time.time(), round(os.getloadavg()[0], 2)
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._peer_runs", str(tmp / f"{name}.spec.json")],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

        def sample() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], tree_pss(child.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            done.set()
            # Timed out, interrupted, or done with Ray processes left over: stop its process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)
    row: dict[str, Any] = {
        "peer": name,
        "wall_s": time.monotonic() - started,
        "peak_pss": peak[0],
        "measured_at": time.strftime("%Y-%m-%d %H:%M", time.localtime(wall_started)),
        "load_before": load_before,  # 1-minute load average as the peer started
    }
    row["disk"] = folder_bytes(work) if work.is_dir() else 0
    result = tmp / f"{name}.json"
    if child.returncode == 0 and result.is_file():
        return row | json.loads(result.read_text(encoding="utf-8"))
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    why = f"ran past {timeout:.0f} s" if row["wall_s"] >= timeout else f"exited {child.returncode}"
    return row | {"error": f"{why}: {lines[-1] if lines else 'no output'} (log {log})"}


def save_row(row: dict[str, Any], config: dict[str, Any], tmp: Path, gpu: bool) -> None:
    """Keep a peer's row as ``<tmp>/<peer>.row.json`` with the search it ran, so that a later run
    with the same ``--storage`` reads it instead of training again (the full table takes hours)."""
    saved = {"experiment": config, "gpu": gpu, "row": row}
    (tmp / f"{row['peer']}.row.json").write_text(json.dumps(saved, indent=1), encoding="utf-8")


def saved_row(name: str, config: dict[str, Any], tmp: Path, gpu: bool) -> dict[str, Any] | None:
    """The row an earlier run kept for ``name``, if it ran this very search without an error."""
    path = tmp / f"{name}.row.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    same = saved.get("experiment") == config and saved.get("gpu") == gpu
    # A row from before peak memory was PSS (``peak_rss``) is stale: its memory is not comparable.
    current = "error" not in saved["row"] and "peak_pss" in saved["row"]
    return saved["row"] if same and current else None


def best_so_far(curve: list[list[float]]) -> list[tuple[float, float]]:
    """(elapsed, best value so far) at each evaluation, in time order."""
    out, best = [], float("-inf")
    for t, value in sorted(curve):
        best = max(best, value)
        out.append((t, best))
    return out


def time_to(curve: list[list[float]], target: float) -> float | None:
    """Seconds until the best-so-far first reached ``target``; ``None`` if it never did."""
    return next((t for t, best in best_so_far(curve) if best >= target), None)


def targets(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Architecture -> the best validation Pearson that every peer of that architecture reached."""
    out: dict[str, float] = {}
    for row in rows:
        if "error" not in row and row.get("curve"):
            arch = PEERS[row["peer"]].architecture
            out[arch] = min(out.get(arch, float("inf")), max(v for _, v in row["curve"]))
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: one row per peer; a crashed peer's row holds its error."""
    goal = targets(rows)
    lines = []
    for row in rows:
        peer = PEERS[row["peer"]]
        if "error" in row:
            lines.append([peer.label, peer.architecture, f"{row['wall_s']:.1f}", *["—"] * 9, row["error"]])
            continue
        scores = row["scores"]

        def pair(split: str, scores: dict[str, Any] = scores) -> str:
            s = scores.get(split)
            return f"{s['pearson']:.4f} / {s['f1']:.4f}" if s else "—"

        reached = time_to(row["curve"], goal[peer.architecture]) if row["curve"] else None
        best = max((v for _, v in row["curve"]), default=float("nan"))
        retrain = f" + {row['retrain_epochs']:g}" if row.get("retrain_epochs") else ""
        lines.append(
            [
                peer.label,
                peer.architecture,
                f"{row['job_s']:.1f}",
                f"{row['retrain_s']:.1f}" if "retrain_s" in row else "—",
                str(row["trials"]),
                f"{row['trial_epochs']:.2f}{retrain}",
                f"{best:.4f}",
                pair("korsts_test"),
                pair("klue_dev"),
                f"{row['peak_pss'] / 2**20:.0f}",
                f"{row['disk'] / 2**20:.1f}",
                "—" if reached is None else f"{reached:.1f}",
                "",
            ]
        )
    columns = [
        "peer",
        "arch",
        "wall to a usable model (s)",
        "of it retraining (s)",
        "trials",
        "trial-epochs (+ retrain)",
        "best val Pearson",
        "KorSTS test Pearson / F1",
        "KLUE-STS dev Pearson / F1",
        "peak memory, PSS (MiB)",
        "disk left (MiB)",
        "time to target (s)",
        "error",
    ]
    return markdown_table(columns, lines, align="ll" + "r" * 10 + "l")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = benchmark_parser(NAME, __doc__)
    p.add_argument(
        "--profile", choices=sorted(PROFILES), default="cpu", help="the search every peer runs (default cpu)"
    )
    p.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS), help="default: all")
    p.add_argument("--quick", action="store_true", help="tiny model, 64/32 pairs, 2 trials of 2 epochs")
    p.add_argument("--gpu", action="store_true", help="use the lent GPU (ours: 0.5 GPU per trial)")
    p.add_argument(
        "--storage", help="keep every peer's folder, log and curves here (default: a temporary folder)"
    )
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per peer at most (default 6 h)")
    args = p.parse_args(argv)
    if args.gpu:
        from tuning.settings import gpu_names

        if not gpu_names():
            p.error("--gpu: this machine has none: drop --gpu.")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch:
        tmp = Path(args.storage).resolve() if args.storage else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        config = experiment(PROFILES[args.profile], args.quick)
        if args.quick:
            config["model"]["name_or_path"] = str(tiny_model(tmp / "tiny-model", config["data"]))
        rows = []
        for name in args.peers:
            peer_config = json.loads(json.dumps(config))
            peer_config["model"]["architecture"] = PEERS[name].architecture
            saved = saved_row(name, peer_config, tmp, args.gpu) if args.storage else None
            if saved:
                print(f"[{NAME}] {name}: read, measured {saved['measured_at']}", file=sys.stderr, flush=True)
                rows.append(saved)
                continue
            print(f"[{NAME}] {name} ...", file=sys.stderr, flush=True)
            rows.append(run_peer(name, peer_config, tmp, args.gpu, args.timeout))
            save_row(rows[-1], peer_config, tmp, args.gpu)
            print(f"[{NAME}] {name}: {rows[-1].get('error') or 'done'}", file=sys.stderr, flush=True)
        if args.storage:
            curves = {r["peer"]: best_so_far(r.get("curve", [])) for r in rows}
            (tmp / "curves.json").write_text(json.dumps(curves, indent=1), encoding="utf-8")
    print(header("Peers: the same search through this tool and the tools used instead", NAME, argv))
    model, train = config["model"], config["data"]["train_size"] or "all"
    print(
        f"\n{model['name_or_path']} ({model['num_hidden_layers'] or 'all'} layers, max_length "
        f"{model['max_length']}); {train} KorSTS training / {config['data']['validation_size']} validation "
        f"pairs; {config['search']['num_samples']} trials of up to {config['training']['num_epochs']} "
        f"epochs; space {sorted(config['space'])}; one peer at a time.\n"
    )
    print(table(rows))
    print(
        "\nWhen each peer ran (1-minute load average as it started): "
        + ", ".join(f"{r['peer']} {r.get('measured_at', '?')} ({r.get('load_before', '?')})" for r in rows)
    )
    goal = targets(rows)
    print("\nTarget (the best validation Pearson every peer of a group reached): "
          + ", ".join(f"{arch} {value:.4f}" for arch, value in goal.items()))  # fmt: skip
    print(
        "\nSet differently (each tool's defaults): ours runs 2 trials at once, ASHA at sub-epoch rungs, "
        "bf16 and frozen embeddings on the CPU profile, TPE after a third of the trials, from KLUE's recipe, "
        "within the profile's time budget; the sentence-transformers peers train one trial at a time in fp32, "
        "st-optuna's pruner never acts (no evaluation during training), Optuna's TPE starts after 10 trials; "
        "hf-ray: Ray's random search, ASHA defaults, 1 CPU per trial, every checkpoint kept. Ours' wall "
        "time includes scoring its top-k on the test splits and writing its report."
    )
    print("\nBest-so-far validation Pearson (elapsed s: value):")
    for row in rows:
        points = ", ".join(f"{t:.0f}: {v:.4f}" for t, v in best_so_far(row.get("curve", [])))
        print(f"- {row['peer']}: {points or 'none'}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
