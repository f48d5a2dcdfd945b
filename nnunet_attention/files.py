"""Output files: written atomically (an interrupted run leaves the old file or none, never half of one), and checked
before any work so that a bad -o is a one-line error and no input is ever overwritten."""
import contextlib
import os

from nnunet_attention.errors import NnUNetAttentionError


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary name beside path to write to; moved onto path when the block succeeds, removed if not."""
    partial = f"{path}.partial"
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.isfile(partial):
            os.remove(partial)


def write_text(path: str, text: str, newline=None):
    with atomic_path(path) as partial, open(partial, "w", newline=newline) as f:
        f.write(text)


def _writable(path: str):
    """Refuses a path whose nearest existing folder cannot be written to."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise NnUNetAttentionError(f"cannot write {path}: {parent} is not a writable folder")


def inside(path: str, folder: str) -> bool:
    """Whether path is folder or lies below it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_folder(path: str, *input_folders: str):
    """Refuses an output folder that is an existing file, is or lies inside an input folder, or is not writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NnUNetAttentionError(f"-o {path} is an existing file; give a folder")
    for folder in input_folders:
        if inside(path, folder):
            raise NnUNetAttentionError(f"-o {path} is inside the input folder {folder}; write the results to "
                                       f"another folder")
    _writable(path)


def check_output_file(path: str, inputs=(), overwrite: bool = False):
    """Refuses an output file that is a folder, an input, an existing file (unless overwrite) or not writable."""
    if os.path.isdir(path):
        raise NnUNetAttentionError(f"{path} is a folder; give a file name")
    for i in inputs:
        if os.path.exists(path) and os.path.samefile(path, i):
            raise NnUNetAttentionError(f"the output {path} is the input {i}; write to another file (the input stays "
                                       f"as it is)")
    if os.path.exists(path) and not overwrite:
        raise NnUNetAttentionError(f"{path} exists; pass --overwrite to replace it, or choose another name")
    _writable(os.path.dirname(os.path.abspath(path)))
