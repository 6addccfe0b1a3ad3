"""Arms x seeds through the one run path, resumable, with one progress bar.

An arm is a config file plus overrides (nothing else); a run is one (arm, seed). Each run goes
through `common.experiment.train_and_evaluate` in `<root>/<arm>/seed_<s>` exactly as

    python -m common.main --config=<arm.config> --config.<key>=<value> ... --config.seed=<s> \
        --workdir=<root>/<arm>/seed_<s>

would run it (`Run.command` is that line). A finished run (its `result.json` written) is
skipped when the sweep is rerun; an interrupted one resumes from its newest checkpoint. So a
killed reproduction rerun with the same `--workdir` finishes with the same numbers, and its
reported wall time is that of every invocation on the workdir (`<workdir>/wall_time.json`).

Seeds run together where that is cheaper: `Arm(vmap_seeds=True)` trains the seeds as one run
with `config.seed = seeds[0]`, `config.num_seeds = len(seeds)` (the experiment vmaps them and
returns `{'per_seed': [metrics of seed 0, ...]}`); `jobs > 1` runs that many runs at once as
`common.main` processes. An arm with its own `seeds` runs those instead of the sweep's (e.g.
more seeds for a claim that needs the power). The reproduce command line's default
(`--jobs=0`) picks the fastest way `benchmarks/seeds.py` and `benchmarks/throughput.py`
measured: on a CPU, one process per core (at most `MAX_AUTO_JOBS`), each pinned to its own core
(`core_slots`), unless the arms vmap their seeds; elsewhere one run at a time.

A paper's `reproduce.py` calls `main(...)` with its arms, seeds and an `analyse` function that
turns the runs into claims (via `common.stats`), tables and plots.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.util
import json
import os
import pathlib
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
import tqdm

import common
from common import experiment, results, watchdog
from common.config import ConfigError
from common.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class After:
  """An override value: the workdir of arm `arm`'s run with the same seed (a stage that starts
  from another run's checkpoint). That arm must come earlier in the sweep."""
  arm: str


@dataclasses.dataclass(frozen=True)
class Arm:
  name: str
  config: str  # 'configs/<paper>/<exp>.py[:arg]', relative to the repository root
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  vmap_seeds: bool = False
  seeds: Sequence[int] = ()  # this arm's own seeds (more for a powered claim); () = the sweep's


@dataclasses.dataclass
class Run:
  arm: str
  seed: int
  workdir: str
  command: str
  metrics: dict[str, Any]

  def history(self, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` in this run's metrics.jsonl (for vmapped seeds, the
    experiment logs `key/seed<i>`)."""
    rows = [r for r in read_metrics(self.workdir) if key in r]
    return [r['step'] for r in rows], [r[key] for r in rows]


def spec(config: str, *args: str, smoke: bool = False) -> str:
  """An arm's config spec, 'config[:arg,...]': the non-empty `args`, then 'smoke' when `smoke`
  (a reproduction's --quick form)."""
  parts = [a for a in (*args, 'smoke' if smoke else '') if a]
  return config + (':' + ','.join(parts) if parts else '')


def load_config(spec: str, overrides: Mapping[str, Any] = (), lock: bool = True
                ) -> ml_collections.ConfigDict:
  """`get_config(arg)` of 'configs/x/y.py[:arg]' (relative to the repository or absolute) with
  dotted-key overrides, locked as `common.main` locks it unless `lock` is False."""
  path, _, arg = spec.partition(':')
  if not (ROOT / path).exists():
    raise ConfigError(f'config file {path} does not exist: give a path under {ROOT}')
  spec_ = importlib.util.spec_from_file_location(f'_config_{abs(hash(path))}', ROOT / path)
  module = importlib.util.module_from_spec(spec_)
  spec_.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  for key, value in dict(overrides).items():
    *path, leaf = key.split('.')
    parent = config
    for part in path:
      parent = parent[part]
    if leaf not in parent:
      raise ConfigError(f'override {key}: no such setting in {spec}')
    parent[leaf] = tuple(value) if isinstance(value, list) else value
  if lock:
    config.lock()
  return config


def _flag_value(value: Any) -> str:
  return value if isinstance(value, str) else repr(value)


def command(spec: str, overrides: Mapping[str, Any], workdir: str) -> list[str]:
  """The `python -m common.main` argument list that runs this config."""
  return ['--config=' + spec, *(f'--config.{k}={_flag_value(v)}' for k, v in overrides.items()),
          f'--workdir={workdir}']


class _Job:
  def __init__(self, arm: Arm, seeds: Sequence[int], root: str):
    self.arm, self.seeds = arm, list(seeds)
    name = f'seeds_{seeds[0]}-{seeds[-1]}' if arm.vmap_seeds else f'seed_{seeds[0]}'
    self.workdir = os.path.join(root, arm.name, name)

  def overrides(self, workdirs: Mapping[tuple[str, int], str]) -> dict[str, Any]:
    out = {k: (workdirs[(v.arm, self.seeds[0])] if isinstance(v, After) else v)
           for k, v in self.arm.overrides.items()}
    out['seed'] = self.seeds[0]
    if self.arm.vmap_seeds:
      out['num_seeds'] = len(self.seeds)
    return out


def _finished(job: _Job, config: ml_collections.ConfigDict) -> dict | None:
  done = experiment.read_result(job.workdir)
  if done is None:
    return None
  if done['config'] != json.loads(experiment.config_json(config)):
    raise ConfigError(f'{job.workdir} holds a finished run of another config: delete it or '
                      'pass another --workdir')
  return done['metrics']


def _split(job: _Job, metrics: dict, cmd: str) -> list[Run]:
  if not job.arm.vmap_seeds:  # an experiment that vmaps seeds, run with one, gives per_seed[0]
    one = metrics.get('per_seed')
    if isinstance(one, list) and len(one) == 1:
      metrics = one[0]
    return [Run(job.arm.name, job.seeds[0], job.workdir, cmd, metrics)]
  per_seed = metrics.get('per_seed')
  if not isinstance(per_seed, list) or len(per_seed) != len(job.seeds):
    raise ValueError(f'{job.arm.name}: a vmap_seeds experiment must return per_seed metrics '
                     f'for its {len(job.seeds)} seeds')
  return [Run(job.arm.name, s, job.workdir, cmd, m)
          for s, m in zip(job.seeds, per_seed, strict=True)]


MAX_AUTO_JOBS = 4


def auto_jobs(arms: Sequence[Arm], quick: bool) -> int:
  """Runs at once when `--jobs=0`: one process per CPU core (two single-seed processes on two
  cores finished 1.1-1.4x sooner than one after another, `benchmarks/seeds.json`); one where
  seeds are vmapped (one program already fills the cores), for the seconds-long quick runs (a
  process start costs more than it saves), or on an accelerator (one device)."""
  import jax
  if quick or jax.default_backend() != 'cpu' or any(a.vmap_seeds for a in arms):
    return 1
  return max(1, min(os.cpu_count() or 1, MAX_AUTO_JOBS))


def run_sweep(arms: Sequence[Arm], seeds: Sequence[int], root: str, *, jobs: int = 1,
              desc: str = 'sweep', watchdog_s: float = 1800) -> dict[str, list[Run]]:
  """Runs every arm x seed (finished runs skipped); returns {arm: [Run per seed, seed order]}.
  With `jobs > 1` each run is a `common.main` process with its own `--watchdog_s`."""
  names = [a.name for a in arms]
  if len(set(names)) != len(names):
    raise ValueError(f'arm names repeat: {names}')
  own = {a.name: list(a.seeds or seeds) for a in arms}
  for a in arms:
    s = own[a.name]
    if a.vmap_seeds and s != list(range(s[0], s[0] + len(s))):
      raise ConfigError(f'{a.name}: seeds {s}: vmapped seeds must be consecutive')
  todo = [_Job(a, own[a.name], root) if a.vmap_seeds else _Job(a, [s], root)
          for a in arms for s in (own[a.name][:1] if a.vmap_seeds else own[a.name])]
  workdirs = {(j.arm.name, s): j.workdir for j in todo for s in j.seeds}
  out: dict[str, list[Run]] = {a.name: [] for a in arms}
  bar = tqdm.tqdm(total=len(todo), desc=desc, unit='run', position=0, mininterval=0,
                  dynamic_ncols=True)

  def finish(job, metrics, cmd, state):
    out[job.arm.name].extend(_split(job, metrics, cmd))
    bar.update(1)
    tqdm.tqdm.write(f'[{desc}] {job.arm.name} seeds {job.seeds}: {state}')

  pool = concurrent.futures.ThreadPoolExecutor(max(jobs, 1)) if jobs > 1 else None
  cores = core_slots(jobs) if pool else None
  pending: dict[Any, tuple[_Job, str]] = {}
  for job in todo:
    deps = {v.arm for v in job.arm.overrides.values() if isinstance(v, After)}
    if pool and deps & {j.arm.name for j, _ in pending.values()}:
      _drain(pending, finish)  # a stage waits for the runs it starts from
    overrides = job.overrides(workdirs)
    config = load_config(job.arm.config, overrides)
    args = command(job.arm.config, overrides, job.workdir)
    cmd = 'python -m common.main ' + ' '.join(shlex.quote(a) for a in args)
    done = _finished(job, config)
    if done is not None:
      finish(job, done, cmd, 'done before, skipped')
    elif pool is None:
      os.makedirs(job.workdir, exist_ok=True)
      finish(job, experiment.train_and_evaluate(config, job.workdir), cmd, 'finished')
    else:
      os.makedirs(job.workdir, exist_ok=True)
      pending[pool.submit(_subprocess, [*args, f'--watchdog_s={watchdog_s:g}'],
                          job.workdir, cores)] = (job, cmd)
  _drain(pending, finish)
  bar.close()
  for runs in out.values():
    runs.sort(key=lambda r: r.seed)
  return out


# A run process gets SIGTERM (saves a checkpoint, exits) when the sweep process dies, even by
# kill -9, so a rerun never races an orphan for the same workdir (Linux: PR_SET_PDEATHSIG, kept
# across exec; elsewhere plain `python -m common.main`).
_WITH_PARENT = ('import ctypes, os, signal, sys\n'
                'ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n'
                'if os.getppid() != int(sys.argv[1]): sys.exit(1)  # the sweep died already\n'
                'os.execv(sys.executable, [sys.executable, "-m", "common.main", *sys.argv[2:]])')


def core_slots(jobs: int) -> queue.Queue | None:
  """One CPU core per run process, when this process may use at least `jobs` cores (Linux):
  pinned, each process's XLA:CPU threads stay on its own core instead of contending with the
  other runs' for all of them (`benchmarks/throughput.json`, 'process per core, pinned')."""
  cores = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
  if jobs < 2 or len(cores) < jobs:
    return None
  slots: queue.Queue = queue.Queue()
  for core in cores[:jobs]:
    slots.put(core)
  return slots


def pin(core: int | None) -> Callable[[], None] | None:
  """A `preexec_fn` that pins the child process to `core` (None: no pinning)."""
  return None if core is None else (lambda: os.sched_setaffinity(0, {core}))


def _subprocess(args: list[str], workdir: str, cores: queue.Queue | None = None) -> dict:
  launch = (['-c', _WITH_PARENT, str(os.getpid())] if sys.platform == 'linux'
            else ['-m', 'common.main'])
  core = cores.get() if cores is not None else None  # free: one pool thread per slot
  try:
    with open(os.path.join(workdir, 'log.txt'), 'a') as log:
      code = subprocess.run([sys.executable, *launch, *args], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=pin(core)).returncode
  finally:
    if core is not None:
      cores.put(core)
  if code:
    raise RuntimeError(f'run failed (exit {code}); see {workdir}/log.txt')
  return experiment.read_result(workdir)['metrics']


def _drain(pending: dict, finish: Callable) -> None:
  """Waits for the runs in flight; each process watches its own progress, so waiting on them
  counts as progress here."""
  while pending:
    watchdog.beat('waiting for run processes')
    done, _ = concurrent.futures.wait(list(pending), timeout=10,
                                      return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
      job, cmd = pending.pop(future)
      finish(job, future.result(), cmd, 'finished')


# --- the reproduce command line ---------------------------------------------------------------

def parse_args(paper: str, default_seeds: Sequence[int], argv: Sequence[str] | None = None,
               quick_seeds: Sequence[int] | None = None) -> argparse.Namespace:
  """The flags every `papers/<paper>/reproduce.py` takes."""
  p = argparse.ArgumentParser(prog=f'python -m papers.{paper}.reproduce')
  p.add_argument('--quick', action='store_true',
                 help='the few-step form (smoke configs); writes results beside its runs')
  p.add_argument('--workdir', default='',
                 help=f'where the runs live (default runs/{paper}[_quick]); rerun with the same '
                      'one to resume: finished runs are skipped')
  p.add_argument('--seeds', default='', help='comma-separated seeds (default '
                 f'{",".join(map(str, default_seeds))})')
  p.add_argument('--arms', default='', help='comma-separated subset of the arms (default all)')
  p.add_argument('--jobs', type=int, default=0, help='runs at once, as separate processes '
                 '(0: one per CPU core, or 1 where seeds are vmapped, quick or on an accelerator)')
  p.add_argument('--out', default='', help='folder for results.json and plots (default '
                 f'papers/{paper}; with --quick, the workdir)')
  p.add_argument('--watchdog_s', type=float, default=1800,
                 help='exit with one line when a run makes no progress this long (0: never)')
  args = p.parse_args(argv)
  default = quick_seeds if args.quick and quick_seeds is not None else default_seeds
  args.seeds = [int(s) for s in args.seeds.split(',')] if args.seeds else list(default)
  args.workdir = os.path.abspath(  # the runs' commands work from any directory
      args.workdir or ROOT / 'runs' / (paper + ('_quick' if args.quick else '')))
  args.out = pathlib.Path(args.out or (args.workdir if args.quick else ROOT / 'papers' / paper))
  return args


@dataclasses.dataclass(frozen=True)
class Pilot:
  """A first sweep, in `<workdir>/pilot`, whose outcome sets the main arms (a learning rate or
  a training length chosen on validation data): `choose(pilot_runs, quick)` -> a JSON-able
  choice, saved as `pilot/choice.json` and passed on as `arms(quick, choice)` and
  `analyse(..., pilot=pilot_runs, choice=choice)`. It runs on `seeds` (default, and with
  --quick: the sweep's first seed)."""
  arms: Callable[[bool], Sequence[Arm]]
  choose: Callable[[dict[str, list[Run]], bool], Any]
  seeds: Sequence[int] = ()


def main(paper: str, title: str, arms: Callable[..., Sequence[Arm]],
         analyse: Callable[..., dict], default_seeds: Sequence[int],
         argv: Sequence[str] | None = None, quick_seeds: Sequence[int] | None = None,
         pilot: Pilot | None = None, jobs: int = 0) -> dict:
  """Runs a paper's reproduction: its `pilot` if any, its arms x seeds, then
  `analyse(runs, quick=, out=)` -> {'claims', 'tables', 'plots', 'notes'}; writes
  `results.json` once, at the end (the pilot's runs under `pilot/<arm>`). `jobs`: the paper's
  measured best number of runs at once, where `auto_jobs` guesses wrong (`--jobs` overrides)."""
  args = parse_args(paper, default_seeds, argv, quick_seeds)
  if not args.jobs and not args.quick:
    args.jobs = jobs
  common.add_xla_flags(*common.CPU_XLA_FLAGS)
  import jax
  jax.config.update('jax_compilation_cache_dir', str(ROOT / '.cache' / 'jax_reproduce'))
  # arms of one paper compile the same small programs (each run builds its own closures):
  # cache them all, not only the slow ones
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  watchdog.start(args.watchdog_s)
  started = time.time()
  with Clock(args.workdir) as clock:  # an interrupted invocation's time counts too
    runs, pilot_runs, analysis = _sweeps(paper, arms, analyse, args, pilot)
  wall, total = time.time() - started, clock.total
  every = runs | {f'pilot/{name}': rs for name, rs in pilot_runs.items()}
  out = results.write_results(
      args.out / 'results.json', paper=paper, title=title, seeds=args.seeds, wall_time_s=total,
      runs={name: [dataclasses.asdict(r) | {'metrics': _scalars(r.metrics)} for r in rs]
            for name, rs in every.items()}, **analysis)
  print(f'wrote {args.out / "results.json"} in {wall:.0f} s ({total:.0f} s in all invocations '
        f'on {args.workdir})')
  return out


def _sweeps(paper: str, arms: Callable[..., Sequence[Arm]], analyse: Callable[..., dict],
            args: argparse.Namespace, pilot: Pilot | None
            ) -> tuple[dict[str, list[Run]], dict[str, list[Run]], dict]:
  """The pilot (if any), the main sweep and the analysis of one `main` invocation."""
  pilot_runs: dict[str, list[Run]] = {}
  if pilot is None:
    chosen = list(arms(args.quick))
  else:  # the first sweep, whose outcome sets the main arms
    pilot_arms = list(pilot.arms(args.quick))
    pilot_seeds = list(pilot.seeds) if pilot.seeds and not args.quick else args.seeds[:1]
    root = pathlib.Path(args.workdir) / 'pilot'
    pilot_runs = run_sweep(pilot_arms, pilot_seeds, str(root),
                           jobs=args.jobs or auto_jobs(pilot_arms, args.quick),
                           desc=f'{paper} pilot', watchdog_s=args.watchdog_s)
    choice = pilot.choose(pilot_runs, args.quick)
    results.write_json(root / 'choice.json', choice)
    chosen = list(arms(args.quick, choice))
  if args.arms:
    wanted = args.arms.split(',')
    unknown = sorted(set(wanted) - {a.name for a in chosen})
    if unknown:
      raise SystemExit(f'error: --arms={unknown[0]} is not one of '
                       f'{", ".join(a.name for a in chosen)}')
    chosen = [a for a in chosen if a.name in wanted]
  jobs = args.jobs or auto_jobs(chosen, args.quick)
  runs = run_sweep(chosen, args.seeds, args.workdir, jobs=jobs, desc=paper,
                   watchdog_s=args.watchdog_s)
  args.out.mkdir(parents=True, exist_ok=True)
  analysis = analyse(runs, quick=args.quick, out=args.out,
                     **({'pilot': pilot_runs, 'choice': choice} if pilot else {}))
  return runs, pilot_runs, analysis


class Clock:
  """The wall time spent on a workdir over every invocation (`<workdir>/wall_time.json`), so a
  resumed reproduction reports the time of all its parts. `tick()` adds the time since the last
  tick and returns the total; inside `with`, it also ticks every `every_s` seconds and on exit,
  so a process killed with -9 loses at most that long."""

  def __init__(self, workdir: str, every_s: float = 60.0):
    self.path = pathlib.Path(workdir) / 'wall_time.json'
    self.total = json.loads(self.path.read_text())['seconds'] if self.path.exists() else 0.0
    self.mark, self.every_s = time.time(), every_s
    self._lock, self._done = threading.Lock(), threading.Event()

  def tick(self) -> float:
    with self._lock:
      now = time.time()
      self.total, self.mark = self.total + now - self.mark, now
      self.path.parent.mkdir(parents=True, exist_ok=True)
      results.write_json(self.path, {'seconds': self.total})
      return self.total

  def __enter__(self) -> Clock:
    threading.Thread(target=self._every, daemon=True, name='sweep-clock').start()
    return self

  def __exit__(self, *exc: Any) -> None:
    self._done.set()
    self.tick()

  def _every(self) -> None:
    while not self._done.wait(self.every_s):
      self.tick()


def _scalars(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def curves(runs: Sequence[Run], key: str) -> tuple[list[int], list[list[float]]]:
  """(steps, [values per seed]) of `key` over one arm's runs: the input of
  `stats.convergence` and `plots.curves`."""
  return runs[0].history(key)[0], [r.history(key)[1] for r in runs]


def metric(runs: Mapping[str, Sequence[Run]], key: str) -> dict[str, list[float]]:
  """{arm: [final `key` per seed, seed order]}: the per_seed input of `common.stats`."""
  return {arm: [float(r.metrics[key]) for r in rs] for arm, rs in runs.items()}
