"""`rematch …`: drives the same Dagster definitions; every run lands in the local instance's run history."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from rematch_pipeline.errors import UserFacingError
from rematch_pipeline.resources.home import RematchHome, default_home
from rematch_pipeline.wording import counted

DEMO_ROUND = "demo-1"
DEMO_SIZE = {"households": 400, "municipalities": 40, "seed": 1}


class CliError(UserFacingError):
    """A failure reported to the user as one line, exit status 1."""


def _home(create: bool = True) -> RematchHome:
    """The data home of REMATCH_HOME, its layout made (`create`) or, for a command that only uses one (round,
    pseudonym, erase), refused if there is none: a mistyped REMATCH_HOME would otherwise leave a new, empty
    home with a fresh key behind and answer from it ("unknown reference", an empty round)."""
    home = RematchHome(root=str(default_home()))
    if not create and not home.exists():
        raise CliError(no_data_home(home.path))
    home.prepare()
    # The Dagster instance of this data home; set before dagster is imported anywhere. REMATCH_HOME is
    # pinned too, so a code server started by `rematch ui` resolves the same home from any directory.
    os.environ["DAGSTER_HOME"] = str(home.dagster_home)
    os.environ["REMATCH_HOME"] = str(home.path)
    return home


def no_data_home(path: Path) -> str:
    """Why a command that uses a data home refused: the path it looked at, how it got it, how a home is made."""
    given = "REMATCH_HOME" if os.environ.get("REMATCH_HOME") else "REMATCH_HOME is not set: ./.rematch of this folder"
    return (
        f"no data home at {path} ({given}); nothing was created. Check the path for a typo, or make a data home"
        " there first with `rematch ingest` (it makes landing/ for the exports), `rematch ui` or `make demo`"
    )


@contextmanager
def _dagster(home: RematchHome) -> Iterator[tuple]:
    """The definitions and the data home's Dagster instance, open for the duration of a command."""
    import dagster as dg

    from rematch_pipeline.definitions import build_definitions

    # Definitions must be built while the instance is entered: Dagster reads its state storage then.
    with dg.DagsterInstance.get() as instance:
        yield build_definitions(home), instance


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest every new file in landing/."""
    from rematch_pipeline.runs import ingest_landing

    home = _home()
    retry = getattr(args, "retry_rejected", False)
    with _dagster(home) as (defs, instance):
        summary = ingest_landing(defs, instance, home, retry=retry)
    for error in summary.rejected:
        print(f"rejected: {error}", file=sys.stderr)
    for line in summary.skipped:
        print(f"left out: {line}")
    for line in summary.replaced:
        print(f"replaced: {line}")
    for line in summary.held_out:
        print(f"held out: {line}", file=sys.stderr)
    for line in summary.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in summary.quarantined:
        print(f"quarantined: {line}", file=sys.stderr)
    for line in summary.retried:
        print(line, file=sys.stdout if line.startswith(("retried: ", "unchanged: ")) else sys.stderr)
    for line in summary.misplaced:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{counted(summary.files_ingested, 'new file')} ingested into {home.warehouse_path}")
    if summary.validated_before:
        print(f"nothing changed since the last validation (run {summary.validated_before[:8]}): not validated again")
    elif not summary.results:
        print(
            f"landing/ holds no export yet: put KoboToolbox, ODK Central or LimeSurvey exports, or filled templates (forms/),"
            f" into {home.landing('households')}, {home.landing('municipalities')} or {home.landing('decisions')},"
            " then run `rematch ingest` again"
        )
    if retry:
        print(f"{counted(summary.files_retried, 'file')} retried" if summary.retried else "nothing to retry")
    if summary.rejected:
        raise CliError(f"{counted(len(summary.rejected), 'file')} rejected (valid files were ingested)")
    return 0


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers in exponent form: YAML 1.1 wants a point (1.0e-4), so
    `relative_gap: 1e-4` was text here while the Launchpad's editor (YAML 1.2) reads it as a number."""


class _DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping; PyYAML keeps the last silently (`period` twice ran the second period)."""

    def __init__(self, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__()
        self.first, self.again = first, again


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    """A mapping whose keys are each given once; a repeated key fails naming both lines (never the key: it may be
    a name typed where a field was meant)."""
    seen: dict[object, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by the keys beside it
            continue
        key = loader.construct_object(key_node)
        try:
            first = seen.setdefault(key, key_node.start_mark)
        except TypeError:  # an unhashable key (a list): the base constructor says so
            break
        if first is not key_node.start_mark:
            raise _DuplicateKey(first, key_node.start_mark)
    return loader.construct_mapping(node)


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def read_yaml(path: str) -> object:
    """The content of a YAML file a person wrote. A file that is not UTF-8 or not YAML fails in one line naming
    the file (and the line and column of a syntax error), never the text there: it may hold a name."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: encoding: not UTF-8; save the file as UTF-8") from None
    except FileNotFoundError:
        raise CliError(f"{path}: no such file; give the path of the round's YAML file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: a folder, not a file; give the path of the round's YAML file") from None
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 -- a SafeLoader
    except _DuplicateKey as exc:
        raise CliError(
            f"{path}, line {exc.again.line + 1}, column {exc.again.column + 1}: a key given twice (first on line"
            f" {exc.first.line + 1}); keep one, the round would take only the last"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # PyYAML's problem quotes what it found there ('!Olena', a character); its context does not.
        said = [part for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part and "'" not in part]
        detail = f" ({': '.join(said)})" if said else ""
        if mark and text.splitlines()[mark.line:mark.line + 1] and "\t" in text.splitlines()[mark.line][: mark.column + 1]:
            # PyYAML's "found character '\t'" is dropped above (it quotes); an editor's tab is the usual cause.
            detail += "; a tab character there: indent with spaces"
        raise CliError(f"{path}{where}: not valid YAML{detail}; check the quotes, brackets and indentation there") from None


def _round_config(args: argparse.Namespace) -> dict:
    config: dict = {}
    if args.config:
        loaded = read_yaml(args.config) or {}
        if not isinstance(loaded, dict):
            raise CliError(f"{args.config}: expected a mapping of round parameters")
        if "ops" in loaded:
            # A run config saved from the Launchpad: its round parameters are those of round_candidates.
            ops = loaded["ops"] if isinstance(loaded["ops"], dict) else {}
            step = ops.get("round_candidates")
            if set(loaded) != {"ops"} or set(ops) != {"round_candidates"} or not isinstance(step, dict) or set(step) != {"config"}:
                raise CliError(
                    f"{args.config}: a run config (ops: …) must hold round parameters under ops.round_candidates.config"
                    " only, as round_job's Launchpad shows them; or write the parameters at the top level"
                )
            loaded = step["config"] or {}
            if not isinstance(loaded, dict):
                raise CliError(f"{args.config}: expected a mapping of round parameters under ops.round_candidates.config")
        config.update(loaded)
    if args.period:
        config["period"] = args.period
    if getattr(args, "time_limit", None):
        config["time_limit_seconds"] = args.time_limit
    return config


def run_round(home: RematchHome, round_id: str, config: dict) -> Path:
    """Run round_job for one round id; returns the report path."""
    from rematch_pipeline.assets.matching import ROUND_ID_PATTERN, ROUND_ID_RULE
    from rematch_pipeline.runs import run_round as launch

    if not ROUND_ID_PATTERN.fullmatch(round_id):
        raise CliError(ROUND_ID_RULE)
    with _dagster(home) as (defs, instance):
        return launch(defs, instance, home, round_id, config)


def cmd_round(args: argparse.Namespace) -> int:
    """Run a matching round over the validated data of an intake period."""
    home = _home(create=False)
    report = run_round(home, args.round_id, _round_config(args))
    out = report.parent
    print(f"proposals: {out / 'proposals.csv'}")
    print(f"solver:    {out / 'solver.json'}")
    print(f"report:    {report}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Write a realistic sample round (canonical templates or a survey tool's export) and print its intake period."""
    from rematch_pipeline.sample import generate_round, write_round

    # Its steps on stderr, as `rematch ingest` and `rematch erase` say theirs (a national round takes half a
    # minute); stdout stays the period alone, which scripts read.
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    sample = generate_round(args.households, args.municipalities, args.seed, **({"period": args.period} if args.period else {}), say=say)
    write_round(sample, Path(args.out), fmt=args.format, say=say)
    say(f"sample: written to {args.out}")
    print(sample.period)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Sample exports into landing/, ingest, run round demo-1, print the report path."""
    from rematch_pipeline.sample import generate_round, write_round

    home = _home()
    sample = generate_round(DEMO_SIZE["households"], DEMO_SIZE["municipalities"], DEMO_SIZE["seed"])
    staging = home.path / "sample-demo"
    written = write_round(sample, staging)
    for path in written:
        kind = path.parent.name
        shutil.copyfile(path, home.landing(kind) / path.name)
    print(f"sample round written to {home.path / 'landing'} (period {sample.period})")
    cmd_ingest(args)
    # 60 s, not 30: in the CI's fresh data home CBC's score stage found no answer in 30 s (its unit order
    # follows that home's pseudonyms) and the demo proposed unweighed scores; 60 s gave 0.27 % there.
    report = run_round(home, DEMO_ROUND, {"period": sample.period, "time_limit_seconds": 60.0})
    print(f"proposals: {report.parent / 'proposals.csv'}")
    print(f"report: {report}")
    return 0


# A PYTHONWARNINGS filter (action:message, the message's start) for the warning `dagster dev` gives on start.
UI_QUIET_WARNING = "ignore:Function `dev_command` is superseded"


def cmd_ui(args: argparse.Namespace) -> int:
    """Start the Dagster UI on this data home."""
    # For its effects: the data home's layout and the DAGSTER_HOME and REMATCH_HOME the UI's processes inherit.
    _home()
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    dagster = Path(sys.executable).parent / "dagster"
    # `dagster dev` opened the UI's terminal with a SupersessionWarning pointing to `dg dev`, a command this
    # project does not install: Dagster's own chatter, nothing a coordinator can act on. Only that warning is
    # silenced (the processes it starts inherit the filter); any other warning still shows.
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), UI_QUIET_WARNING]))
    os.execv(str(dagster), [str(dagster), "dev", "-w", str(workspace), "-p", str(args.port)])
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase a household from the identity store and every derived table."""
    from rematch_pipeline.erasure import erase_household

    home = _home(create=False)
    # Its steps, as it goes (stderr, as Dagster's run lines): on a national data home it takes half a minute and more.
    erasure = erase_household(home, args.household_ref, say=lambda line: print(line, file=sys.stderr, flush=True))
    if erasure.already_erased is not None:
        print(f"nothing to erase: the household with this reference was erased on {erasure.already_erased:%Y-%m-%d} and nothing of it is stored")
    else:
        print(f"erased: {counted(erasure.rows, 'row')}; {counted(erasure.rejected_deleted, 'rejected export')} naming the household deleted")
    if erasure.unlinked_members:
        print(
            f"{counted(erasure.unlinked_members, 'member row')} without a household's link in the exports that held its members"
            " erased with it (whose person cannot be told); the other households of those members files stay held out until a corrected export lands"
        )
    if erasure.unlinked:
        print(f"{counted(erasure.unlinked, 'household row')} had named it as linked: the link is removed, check those households' link groups")
    if erasure.rejected_uninspected:
        names = ", ".join(erasure.rejected_uninspected)
        print(f"warning: rejected export(s) not inspected (unreadable or over the limits), check them by hand: {names}", file=sys.stderr)
    if erasure.dagster_runs:
        # Dagster keeps its runs' logs and metadata itself; a pseudonym there is still the household's.
        print(
            f"warning: {counted(len(erasure.dagster_runs), 'Dagster run')} still name the household (by pseudonym) in their logs,"
            " metadata or config; delete them in the UI or with `dagster run delete RUN_ID` (docs/operations.md, Erasure): "
            + ", ".join(erasure.dagster_runs),
            file=sys.stderr,
        )
    return 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    """Print the pseudonym of each household reference (for locked_pairs, forbidden_pairs, record_decisions_job)."""
    from rematch_pipeline.resources.identity import IdentityStore, pseudonym

    home = _home(create=False)
    secret = home.secret()
    # By its position on the command line, never the reference (it may be personal data: the line may be
    # copied into a ticket or a chat), as `rematch erase` never repeats it.
    wanted = [pseudonym(secret, "household", ref.strip()) if ref.strip() else "" for ref in args.household_refs]
    # Only a household of the identity store gets its pseudonym: a mistyped reference would otherwise get
    # a well-formed pseudonym that matches nothing (a lock of it is refused later, far from the typo).
    stored = IdentityStore(home=home).household_refs([p for p in wanted if p])
    unknown = 0
    for position, target in enumerate(wanted, start=1):
        if target in stored:
            print(f"reference {position} -> {target}")
        else:
            unknown += 1
            print(f"reference {position}: {NO_HOUSEHOLD_OF_REFERENCE}", file=sys.stderr)
    return 1 if unknown else 0


# Said by `rematch pseudonym` for a reference no household of the identity store has (never the reference).
NO_HOUSEHOLD_OF_REFERENCE = (
    "no household of the identity store has this reference (mistyped, erased, or a household without consent,"
    " whose reference is not kept); check it against the household_ref column of the households export"
    " or of a round's proposals.csv"
)


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="rematch", description="Match refugee households to municipalities (data home: $REMATCH_HOME, default ./.rematch).")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help=cmd_demo.__doc__).set_defaults(func=cmd_demo)
    i = sub.add_parser("ingest", help=cmd_ingest.__doc__)
    i.add_argument(
        "--retry-rejected", action="store_true", dest="retry_rejected",
        help="also read again the files an older version refused or withheld cells of (docs/operations.md)",
    )
    i.set_defaults(func=cmd_ingest)
    r = sub.add_parser("round", help=cmd_round.__doc__)
    r.add_argument("round_id")
    r.add_argument("--period", help="intake period YYYY-MM (default: the latest with offers)")
    r.add_argument("--config", help="YAML file of round parameters (see docs/operations.md)")
    r.add_argument("--time-limit", type=float, dest="time_limit", help="solver time limit in seconds (default: by the round size, 60-600 s)")
    r.set_defaults(func=cmd_round)
    s = sub.add_parser("sample", help=cmd_sample.__doc__)
    s.add_argument("--households", type=int, required=True)
    s.add_argument("--municipalities", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--period", help="intake period YYYY-MM of the sample")
    from rematch_pipeline.sample import SAMPLE_FORMATS

    s.add_argument(
        "--format", choices=SAMPLE_FORMATS, default="csv",
        help="canonical templates (csv, xlsx) or as the tool exports them (docs/formats.md, Sample rounds)",
    )
    s.set_defaults(func=cmd_sample)
    u = sub.add_parser("ui", help=cmd_ui.__doc__)
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(func=cmd_ui)
    e = sub.add_parser("erase", help=cmd_erase.__doc__)
    e.add_argument("household_ref")
    e.set_defaults(func=cmd_erase)
    n = sub.add_parser("pseudonym", help=cmd_pseudonym.__doc__)
    n.add_argument("household_refs", nargs="+", metavar="HOUSEHOLD_REF")
    n.set_defaults(func=cmd_pseudonym)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 with a one-line reason on failure."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserFacingError as exc:
        print(f"rematch: {exc}", file=sys.stderr)
        return 1

    except (OSError, ValueError) as exc:
        print(f"rematch: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
