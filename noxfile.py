"""Project tasks: `nox -s tests`, `lint`, `typecheck`, `coverage`, `docs`, `demo`, `bench`."""

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"
DEV = ".[dev]"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, in parallel, against the embedded or the given Postgres."""
    session.install("-e", DEV)
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff")
    paths = ["flowstone", "tests", "examples", "benchmarks", "migrations", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", DEV)
    session.run("mypy", "--strict", "flowstone")


@nox.session
def coverage(session: nox.Session) -> None:
    """The test suite with an HTML coverage report in htmlcov/."""
    session.install("-e", DEV)
    session.run("pytest", "-n", "2", "--cov=flowstone", "--cov-report=html", "--cov-report=term")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built into site/ with --strict (a broken link or reference
    fails); `nox -s docs -- serve` serves it with live reload instead."""
    session.install("-e", ".[docs]")
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The example pipeline, materialized through a real worker."""
    session.install("-e", DEV)
    session.run("python", "examples/run_pipeline.py")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (see docs/benchmarks.md)."""
    session.install("-e", DEV)
    session.run("python", "-m", "benchmarks", *session.posargs)
