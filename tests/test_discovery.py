"""nnU-Net's own trainer lookup finds our trainers right after installation (the .pth hook), in fresh interpreters."""
import os
import subprocess
import sys

from helpers import NEEDS_EXT_TRAINER, TEST_TRAINERS, python_cmd

from nnunet_attention.model import discovery


def _fresh_python(*code_lines, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env.update(env_changes)
    return subprocess.run(python_cmd(*code_lines), env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_interpreter_start_registers_our_folder_without_importing_torch():
    out = _fresh_python("import os, sys; print(os.environ['nnUNet_extTrainer']); print('torch' in sys.modules)")
    folder, torch_imported = out.splitlines()
    assert folder == discovery.TRAINER_FOLDER
    assert torch_imported == "False"


def test_users_own_folders_keep_their_place_in_front():
    own = os.pathsep.join(["/data/my_trainers", "/data/more_trainers"])
    out = _fresh_python("import os; print(os.environ['nnUNet_extTrainer'])", nnUNet_extTrainer=own)
    assert out == os.pathsep.join([own, discovery.TRAINER_FOLDER])


def test_registration_is_idempotent():
    environ = {"nnUNet_extTrainer": discovery.TRAINER_FOLDER}
    discovery.register_trainer_folder(environ)
    assert environ["nnUNet_extTrainer"] == discovery.TRAINER_FOLDER


@NEEDS_EXT_TRAINER
def test_nnunet_finds_every_trainer_we_list_and_a_users_subclass_of_them():
    out = _fresh_python(
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find",
        "import nnunet_attention.model.trainers as ours",
        "assert len(ours.trainer_names()) > 15",
        "for name in ours.trainer_names():",
        "    assert find(name) is getattr(ours, name), name",
        "user_class = find('nnUNetTrainerAttentionTiny')",
        "print(issubclass(user_class, ours.nnUNetTrainerAttention))",
        nnUNet_extTrainer=str(TEST_TRAINERS),
    )
    assert out.endswith("True")


def test_trainers_command_lists_and_points_to_the_folder():
    listing = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "trainers"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert "nnUNetTrainerAttention" in listing and "nnUNetTrainerAttention_1epoch" in listing
    path = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "trainers", "--path"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert path == discovery.TRAINER_FOLDER


def _lazy_module(name: str, imports: int = 20):
    """A module without __file__ whose attribute access (PEP 562 __getattr__) imports another module, as lazy loaders
    do; on each of its first `imports` accesses a new one, so that other readers of sys.modules (inspect, warnings)
    cannot use the probe up before nnU-Net reads it."""
    import types

    module = types.ModuleType(name)
    done = []

    def __getattr__(attribute):
        if len(done) < imports:
            done.append(f"{name}_imported_on_access_{len(done)}")
            sys.modules[done[-1]] = types.ModuleType(done[-1])
        raise AttributeError(attribute)

    module.__getattr__ = __getattr__
    sys.modules[name] = module


@NEEDS_EXT_TRAINER
def test_trainer_lookup_survives_a_module_whose_attribute_access_imports_another(monkeypatch):
    """nnU-Net's own lookup through nnUNet_extTrainer iterates sys.modules while reading each module's __file__; a
    lazy module then breaks it. Ours reads them first."""
    import pytest
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_attention.nnunet_api import find_trainer_class

    monkeypatch.setenv("nnUNet_extTrainer", discovery.TRAINER_FOLDER)
    try:
        _lazy_module("nnunet_attention_lazy_probe_a")
        with pytest.raises(RuntimeError, match="dictionary changed size during iteration"):
            recursive_find_trainer_class_by_name("nnUNetTrainerAttention")
        _lazy_module("nnunet_attention_lazy_probe_b")
        assert find_trainer_class("nnUNetTrainerAttention").__name__ == "nnUNetTrainerAttention"
    finally:
        for name in [n for n in sys.modules if n.startswith("nnunet_attention_lazy_probe")]:
            del sys.modules[name]
