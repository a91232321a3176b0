"""Model shells: wrappers that search around each input before classifying it."""

from shells.base import CAPABILITIES, IdentityShell, Shell, capabilities
from shells.mcn import MCNShell
from shells.ncn import NCNShell
from shells.registry import build_shell, shell_factories
from shells.vote import VoteShell

__all__ = ["CAPABILITIES", "IdentityShell", "MCNShell", "NCNShell", "Shell", "VoteShell", "build_shell",
           "capabilities", "shell_factories"]
