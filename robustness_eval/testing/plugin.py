"""pytest plugin: `pytest --shell module:factory` runs the whole kit against a user's shell.

Registered through the `pytest11` entry point. Each applicable invariant becomes one test item
named `shell_kit::<invariant>`; `--shell-only` deselects every other test;
`--shell-profile thorough` draws 200 examples per invariant instead of 15.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("robustness_eval shell kit")
    group.addoption("--shell", default=None, metavar="MODULE:FACTORY",
                    help="run the shell property kit on factory(model) -> shell")
    group.addoption("--shell-profile", default="quick", choices=["quick", "thorough"],
                    help="examples per invariant: quick (15) or thorough (200)")
    group.addoption("--shell-only", action="store_true", help="run only the shell kit's tests")


class ShellKitError(Exception):
    pass


class ShellKitItem(pytest.Item):
    def __init__(self, *, invariant, factory, profile, **kwargs) -> None:
        super().__init__(**kwargs)
        self.invariant, self.factory, self.profile = invariant, factory, profile

    def runtest(self) -> None:
        from robustness_eval.testing.kit import check_invariant

        verdict = check_invariant(self.factory, self.invariant, self.profile)
        if verdict.status == "fail":
            raise ShellKitError(f"{verdict.message}\nshrunk counterexample: {verdict.counterexample}")

    def repr_failure(self, excinfo, style=None) -> str:
        if isinstance(excinfo.value, ShellKitError):
            return f"{self.invariant.name}: {self.invariant.doc}\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"shell_kit::{self.invariant.name}"


def pytest_collection_modifyitems(session, config, items) -> None:
    spec = config.getoption("--shell")
    if not spec:
        return
    from robustness_eval.testing.kit import applicable, load_factory

    factory = load_factory(spec)
    kit = [ShellKitItem.from_parent(session, name=f"shell_kit::{inv.name}", invariant=inv,
                                    factory=factory, profile=config.getoption("--shell-profile"))
           for inv in applicable(factory)]
    if config.getoption("--shell-only"):
        config.hook.pytest_deselected(items=list(items))
        items[:] = kit
    else:
        items.extend(kit)
