"""Model shells: wrappers that search around each input before classifying it, and the defenses of
the literature written as shells (Defense-GAN, MagNet, JPEG, TVM, bit-depth, resizing and padding, DiffPure)."""

from shells.base import CAPABILITIES, IdentityShell, RandomizedShell, Shell, capabilities
from shells.bit_depth import BitDepthShell
from shells.defense_gan import DefenseGANShell
from shells.diffpure import DiffPureShell
from shells.jpeg import JPEGShell
from shells.magnet import MagNetShell
from shells.mcn import MCNShell
from shells.ncn import NCNShell
from shells.registry import build_shell, shell_factories
from shells.resize_pad import ResizePadShell
from shells.tvm import TVMShell
from shells.vote import VoteShell

__all__ = ["CAPABILITIES", "BitDepthShell", "DefenseGANShell", "DiffPureShell", "IdentityShell", "JPEGShell",
           "MCNShell", "MagNetShell", "NCNShell", "RandomizedShell", "ResizePadShell", "Shell", "TVMShell", "VoteShell",
           "build_shell", "capabilities", "shell_factories"]
