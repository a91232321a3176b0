"""Model shells: wrappers that search around each input before classifying it."""

from shells.base import SHELL_KINDS, IdentityShell, Shell
from shells.factory import build_shell
from shells.mcn import MCNShell
from shells.ncn import NCNShell
from shells.vote import VoteShell

__all__ = ["SHELL_KINDS", "IdentityShell", "MCNShell", "NCNShell", "Shell", "VoteShell", "build_shell"]
