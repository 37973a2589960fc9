"""End-to-end time of `platform-server invitations import` on a 100 000-row workbook, beside calamine alone.

Generates the workbook with openpyxl (valid, distinct GB 11643 ID numbers), imports a 20-row file once
untimed (fills the bytecode cache, as a deployed platform has it), then per run: a fresh SQLite file
(or a private PostgreSQL schema), `batch create` (not timed), and the timed `invitations import` as a
subprocess, wall clock from spawn to exit. The baseline is python-calamine parsing the same file in
this process, in the same run. Then the phase timeline of one more import (`--verbose`), and the time
of each kind of bad file until it is refused (exit code 3, nothing written). Prints each run, the
medians and last `ratio_import_vs_calamine_parse=<x>`.

    .venv/bin/python bench/import_speed.py [--rows 100000] [--runs 3] [--pg URL] [--keep FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from personal_data.id_number import check_digit  # noqa: E402

CLI = Path(sys.executable).parent / "platform-server"
DATA_KEY = "benchmark data key, never used for real personal data"


def id_numbers(count: int) -> list[str]:
    """`count` distinct valid ID numbers: region x birth date x sequence, check digit computed."""
    out: list[str] = []
    first = dt.date(1950, 1, 1)
    n = 0
    while len(out) < count:
        region = 110101 + (n % 997) * 7
        birth = (first + dt.timedelta(days=(n // 997) % 20000)).strftime("%Y%m%d")
        first17 = f"{region:06d}{birth}{(n // (997 * 20000)) % 1000:03d}"
        out.append(first17 + check_digit(first17))
        n += 1
    return out


def write_workbook(path: Path, rows: int) -> None:
    """The invitation template's columns, ID numbers as text, as an organiser's Excel would have them."""
    from openpyxl import Workbook  # noqa: PLC0415

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("邀请专家")
    sheet.append(["身份证号", "姓名", "手机号", "工作单位", "专业", "房间号"])
    organisations = ["某某设计研究院有限公司", "省建筑科学研究院", "市政工程设计院", "交通规划勘察设计院"]
    specialties = ["市政给排水", "房屋建筑", "公路工程", "造价", "电气"]
    for i, value in enumerate(id_numbers(rows)):
        sheet.append([value, f"专家{i}", f"139{i:08d}", organisations[i % 4], specialties[i % 5], None])
    workbook.save(path)


def parse_alone(path: Path) -> float:
    """Seconds python-calamine takes to parse the workbook into Python rows (the baseline)."""
    from python_calamine import CalamineWorkbook  # noqa: PLC0415

    started = time.perf_counter()
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python(skip_empty_area=False)
    elapsed = time.perf_counter() - started
    assert len(rows) > 1
    return elapsed


def cli(env: dict[str, str], *args: str, expect: int = 0) -> tuple[float, str, str]:
    """Run the CLI; (wall seconds, last stdout line, stderr). Exits the benchmark on an unexpected code."""
    started = time.perf_counter()
    done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != expect:
        sys.exit(f"{' '.join(args[:2])} exited {done.returncode}, not {expect}: {done.stderr.strip()[-500:]}")
    lines = done.stdout.strip().splitlines()
    return elapsed, lines[-1] if lines else "", done.stderr


def one_run(env: dict[str, str], workbook: Path, code: str, *verbose: str) -> tuple[float, str]:
    """Create the batch (untimed), then time the import; (seconds, stderr)."""
    cli(env, "batch", "create", code, "--name", "导入基准 / import benchmark")
    elapsed, line, err = cli(env, "invitations", "import", str(workbook), "--batch", code, *verbose)
    print(f"  {elapsed:6.2f} s  ({line})", flush=True)
    return elapsed, err


def bad_files(folder: Path, workbook: Path, rows: int) -> dict[str, Path]:
    """One file of each kind an organiser may hand in by mistake, and big ones with bad rows."""
    from openpyxl import Workbook  # noqa: PLC0415

    files = {name: folder / name for name in ("empty.xlsx", "text.xlsx", "truncated.xlsx", "list.txt")}
    files["empty.xlsx"].write_bytes(b"")
    files["text.xlsx"].write_text("not a workbook", encoding="utf-8")
    files["truncated.xlsx"].write_bytes(workbook.read_bytes()[: workbook.stat().st_size // 2])
    files["list.txt"].write_text("身份证号\n", encoding="utf-8")
    files["binary.csv"] = folder / "binary.csv"
    files["binary.csv"].write_bytes(bytes(range(256)) * 40)
    files["latin1.csv"] = folder / "latin1.csv"
    files["latin1.csv"].write_bytes(b"\xff\xfe\xfa\xfb" * 50)
    files["workbook-named.csv"] = folder / "workbook-named.csv"
    files["workbook-named.csv"].write_bytes(workbook.read_bytes())
    files["no-id-column.csv"] = folder / "no-id-column.csv"
    files["no-id-column.csv"].write_text("姓名,手机号\n张三,13900000000\n", encoding="utf-8")
    files["header-only.csv"] = folder / "header-only.csv"
    files["header-only.csv"].write_text("身份证号,姓名,手机号,工作单位,专业\n", encoding="utf-8")
    # The big file with three bad rows near its end: found by the reader after all the good ones.
    values = id_numbers(rows)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("邀请专家")
    sheet.append(["身份证号", "姓名", "手机号", "工作单位", "专业", "房间号"])
    values[rows - 3] = values[rows - 3][:17] + ("0" if values[rows - 3][17] != "0" else "1")  # wrong check digit
    for i, value in enumerate(values):
        phone = "phone?" if i == rows - 2 else f"139{i:08d}"
        sheet.append([value, f"专家{i}" if i != rows - 1 else "", phone, "设计院", "市政", None])
    files[f"{rows}-rows-3-bad.xlsx"] = folder / "bad-rows.xlsx"
    book.save(files[f"{rows}-rows-3-bad.xlsx"])
    return files


def refusals(env: dict[str, str], folder: Path, workbook: Path, rows: int) -> None:
    """Time each kind of bad file to its refusal (exit code 3), and a re-import of an invited list."""
    print("refused files (each: exit code 3, one line per reason or bad row, nothing written):")
    cli(env, "batch", "create", "REFUSE", "--name", "拒绝基准 / refusals")
    for kind, path in bad_files(folder, workbook, rows).items():
        elapsed, _line, err = cli(env, "invitations", "import", str(path), "--batch", "REFUSE", expect=3)
        first = err.strip().splitlines()[0] if err.strip() else ""
        print(f"  {elapsed:6.2f} s  {kind:22s} {first[:110]}", flush=True)
    cli(env, "invitations", "import", str(workbook), "--batch", "REFUSE")
    elapsed, _line, err = cli(env, "invitations", "import", str(workbook), "--batch", "REFUSE", expect=3)
    print(f"  {elapsed:6.2f} s  {'same list again':22s} {err.strip().splitlines()[0][:110]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", help="also run on PostgreSQL (a private schema, dropped afterwards)")
    parser.add_argument("--keep", type=Path, help="reuse/keep the generated workbook at this path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workbook = args.keep or Path(tmp) / "invitations.xlsx"
        if not workbook.exists():
            started = time.perf_counter()
            write_workbook(workbook, args.rows)
            print(f"generated {args.rows} rows with openpyxl in {time.perf_counter() - started:.1f} s: {workbook}")
        env = {**os.environ, "PLATFORM_DATA_KEY": DATA_KEY, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        # A deployed platform has its bytecode compiled; this shell may forbid writing it, so give the
        # subprocesses a private cache, filled by an untimed import of a small file.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PLATFORM_IMPORT_TIMING", None)
        small = Path(tmp) / "small.xlsx"
        write_workbook(small, 20)
        one_run({**env, "PLATFORM_DB_URL": f"sqlite:///{tmp}/warm.db"}, small, "WARM")
        results: dict[str, list[float]] = {"sqlite": []}
        parses = [parse_alone(workbook) for _ in range(args.runs)]
        print("sqlite (fresh file per run):")
        for run in range(args.runs):
            run_env = {**env, "PLATFORM_DB_URL": f"sqlite:///{tmp}/run{run}.db"}
            results["sqlite"].append(one_run(run_env, workbook, f"BENCH{run}")[0])
        print("one more with --verbose (phase timeline; not counted above):")
        _elapsed, timeline = one_run({**env, "PLATFORM_DB_URL": f"sqlite:///{tmp}/verbose.db"}, workbook, "V", "-v")
        print(timeline.rstrip())
        refusals({**env, "PLATFORM_DB_URL": f"sqlite:///{tmp}/refusals.db"}, Path(tmp), workbook, args.rows)
        if args.pg:
            import sqlalchemy as sa  # noqa: PLC0415

            schema = "bench_" + uuid.uuid4().hex[:8]
            admin = sa.create_engine(args.pg)
            with admin.begin() as c:
                c.exec_driver_sql(f"CREATE SCHEMA {schema}")
            url = f"{args.pg}{'&' if '?' in args.pg else '?'}options={quote(f'-csearch_path={schema}')}"
            results["postgresql"] = []
            print(f"postgresql (schema {schema}, one batch per run):")
            try:
                for run in range(args.runs):
                    results["postgresql"].append(one_run({**env, "PLATFORM_DB_URL": url}, workbook, f"BENCH{run}")[0])
            finally:
                with admin.begin() as c:
                    c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
                admin.dispose()
        parses += [parse_alone(workbook) for _ in range(args.runs)]
    parse = statistics.median(parses)
    print(f"calamine parse alone (same file, this process): median {parse:.3f} s of {len(parses)}")
    for backend, times in results.items():
        print(f"import end to end ({backend}): median {statistics.median(times):.2f} s, best {min(times):.2f} s")
    for backend, times in results.items():
        print(f"ratio_import_vs_calamine_parse_{backend}={statistics.median(times) / parse:.2f}")
    print(f"ratio_import_vs_calamine_parse={statistics.median(results['sqlite']) / parse:.2f}")


if __name__ == "__main__":
    main()
