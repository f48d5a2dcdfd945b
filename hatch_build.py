"""Ships nnunet_attention_discovery.pth into site-packages, for regular and editable installs alike."""
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class DiscoveryPthHook(BuildHookInterface):
    def initialize(self, version, build_data):
        target = "force_include_editable" if version == "editable" else "force_include"
        build_data[target]["nnunet_attention_discovery.pth"] = "nnunet_attention_discovery.pth"
