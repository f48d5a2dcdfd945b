"""The package's four parts and the rule between them (docs/development.md): shared modules at the top import none
of the parts; the model imports only the shared modules; the comparison and the tools add the model; the study
pipeline adds the comparison; only the CLI reaches everything."""
import ast
import pathlib

import nnunet_attention

PACKAGE = pathlib.Path(nnunet_attention.__file__).parent
PARTS = ("model", "study", "compare", "tools")
SHARED = {"errors", "nnunet_api", "files", "devices", "figures"}
TOP = {"cli"}  # reaches everything; nothing in the package imports it
PUBLIC_ALIASES = {"trainers": "model", "networks": "model"}  # nnunet_attention.trainers / .networks, users' paths
MAY_IMPORT = {"shared": {"shared"}, "model": {"shared", "model"}, "compare": {"shared", "model", "compare"},
              "tools": {"shared", "model", "tools"}, "study": {"shared", "model", "compare", "study"}}


def _part(module: str) -> str:
    """'nnunet_attention.study.grid' -> 'study'; a top-level shared module -> 'shared'."""
    name = module.split(".")[1] if "." in module else ""
    if name in TOP:
        return "top"
    return name if name in PARTS else PUBLIC_ALIASES.get(name, "shared")


def _imports(source: pathlib.Path):
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("nnunet_attention"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nnunet_attention"):
            if node.module == "nnunet_attention":
                yield from (f"nnunet_attention.{a.name}" for a in node.names)
            else:
                yield node.module


def test_the_top_level_holds_only_the_four_parts_and_what_they_share():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(PARTS)
    assert modules == SHARED | TOP | set(PUBLIC_ALIASES)


def test_each_part_imports_only_what_the_dependency_rule_allows():
    broken = []
    for source in PACKAGE.rglob("*.py"):
        relative = source.relative_to(PACKAGE)
        if len(relative.parts) == 1 and source.stem in {"__init__", *TOP, *PUBLIC_ALIASES}:
            continue  # the package's start (discovery), the public aliases and the CLI are the roots
        own = relative.parts[0] if len(relative.parts) > 1 else "shared"
        broken += [f"{relative} imports {m}" for m in _imports(source) if _part(m) not in MAY_IMPORT[own]]
    assert broken == []


def test_the_public_import_paths_users_name_are_the_models_modules():
    import nnunet_attention.model.networks
    import nnunet_attention.model.trainers
    import nnunet_attention.networks
    import nnunet_attention.trainers

    assert nnunet_attention.trainers is nnunet_attention.model.trainers
    assert nnunet_attention.networks is nnunet_attention.model.networks
