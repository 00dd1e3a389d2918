"""envs/*.yaml: every rule declares one, and it names every package the rule's code can import.

CI cannot reach conda channels, so the environments are not built here. Instead the imports are
derived from the package: a rule runs `bbmn <command>`; the `bbmn` command imports every
subcommand module to build its parser, then runs the subcommand; the closure of those modules'
imports (module-level and inside functions, so it over-approximates) gives the third-party
modules, and each must map to a package the rule's environment installs.
"""

import ast
import functools
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

RULE_FILES = sorted((REPO / "rules").glob("*.smk"))
#: conda-forge names of packages whose import name or PyPI name differs.
CONDA_NAMES = {"torch": {"pytorch"}, "torch-geometric": {"pytorch_geometric"},
               "matplotlib": {"matplotlib-base", "matplotlib"}, "pyyaml": {"pyyaml"}}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_rules() -> dict[str, dict]:
    """``{rule: {"file", "conda", "commands"}}`` from the rule files' text."""
    rules = {}
    for path in RULE_FILES:
        blocks = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            conda = re.search(r'^    conda:\n\s+"([^"]+)"', body, flags=re.M)
            shell = body.split("    shell:", 1)[1] if "    shell:" in body else ""
            commands = set(re.findall(r'(?:\bbbmn|\{params\.launcher\})\s+([a-z]+)', shell))
            rules[name] = {"file": path, "conda": conda and conda.group(1), "commands": commands}
    return rules


def _module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


@functools.cache
def module_imports(name: str, top_level_only: bool = False) -> frozenset[str]:
    """Modules that ``name`` imports (relative imports resolved; ``from a import b`` gives a and,
    when it is a module, a.b)."""
    path = _module_file(name)
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")}
    return frozenset(found)


@functools.cache
def third_party_imports(command: str) -> frozenset[str]:
    """Top-level third-party modules that `bbmn <command>` can import."""
    from bbmn.cli.main import COMMANDS

    assert command in COMMANDS, f"a rule runs `bbmn {command}`, which is not a subcommand"
    todo = ["bbmn.cli.main", f"bbmn.cli.{command}"]
    for other in COMMANDS:  # build_parser() imports every subcommand module
        todo += module_imports(f"bbmn.cli.{other}", top_level_only=True)
    seen, third = set(), set()
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if top != "bbmn":
            if top and top not in sys.stdlib_module_names:
                third.add(top)
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            module = ".".join(parts[:i])
            if module not in seen and _module_file(module):
                seen.add(module)
                todo += module_imports(module)
    return frozenset(third)


def env_packages(env: dict) -> set[str]:
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_norm(re.match(r"[A-Za-z0-9_.-]+", p).group()) for p in dep.get("pip", [])}
        else:
            names.add(_norm(re.match(r"[A-Za-z0-9_.-]+", dep).group()))
    return names


@functools.cache
def candidates(module: str) -> frozenset[str]:
    """Package names (PyPI and conda-forge) that provide an import name."""
    dists = packages_distributions().get(module, [module])
    names = {_norm(d) for d in dists}
    for d in list(names):
        names |= {_norm(c) for c in CONDA_NAMES.get(d, ())}
    return frozenset(names)


RULES = parse_rules()


def test_the_rule_files_are_parsed():
    assert {"fetch", "clean", "featurize", "pretrain", "finetune", "table", "plot_roc"} <= set(RULES)
    assert RULES["pretrain"]["commands"] == {"pretrain"} and RULES["plot_roc"]["commands"] == {"plot"}


@pytest.mark.parametrize("rule", sorted(r for r in RULES if r != "all"))
def test_every_rule_has_an_environment_with_what_its_code_imports(rule):
    info = RULES[rule]
    assert info["conda"], f"rule {rule} ({info['file'].name}) declares no conda: environment"
    env_file = (info["file"].parent / info["conda"]).resolve()
    assert env_file.is_file(), f"rule {rule}: {info['conda']} does not exist"
    packages = env_packages(yaml.safe_load(env_file.read_text()))
    assert info["commands"], f"rule {rule} runs no bbmn command"
    for command in info["commands"]:
        missing = sorted(m for m in third_party_imports(command) if not candidates(m) & packages)
        assert not missing, f"rule {rule} (bbmn {command}): {env_file.name} lacks {missing}"


@pytest.mark.parametrize("env_file", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_environments_are_pinned_conda_forge_and_install_bbmn(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    for dep in env["dependencies"]:
        if isinstance(dep, str) and dep not in ("pip", "wheel"):
            assert re.search(r"[=<>]", dep), f"{env_file.name}: {dep} is not pinned"
        if isinstance(dep, dict):
            assert all(re.search(r"[=<>]", p) for p in dep["pip"]), f"{env_file.name}: unpinned pip package"
    assert {"python", "pip", "setuptools"} <= env_packages(env)
    deploy = env_file.with_name(env_file.stem + ".post-deploy.sh")
    assert deploy.is_file(), f"{deploy.name} (installs bbmn into the environment) is missing"
    assert "pip install" in deploy.read_text() and "$BBMN_SOURCE" in deploy.read_text()
    assert f'BBMN_SOURCE", str(Path(workflow.basedir).parent)' in (REPO / "rules" / "common.smk").read_text()


def test_the_import_closure_finds_lazy_imports():
    """The derivation must see imports inside functions (mlflow is imported only there)."""
    assert "mlflow" in third_party_imports("finetune")
    assert "matplotlib" in third_party_imports("plot")
    assert "descriptastorus" in third_party_imports("descriptors")
    assert not {"bbmn", "json", "os"} & third_party_imports("table")
