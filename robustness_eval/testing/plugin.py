"""pytest plugin: `pytest --shell-kit module:factory` runs the whole kit against a user's shell.

Registered through the `pytest11` entry point. Each applicable invariant becomes one test item
named `shell_kit::<invariant>`; `--shell-kit-only` deselects every other test;
`--shell-kit-profile thorough` draws 200 examples per invariant instead of 15;
`--shell-kit-input-shape 1,8,8` or `--shell-kit-data digits` draws inputs of the shape the shell
is written for. Every option carries the `--shell-kit` prefix, so none claims a generic name.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("robustness_eval shell kit")
    group.addoption("--shell-kit", default=None, metavar="MODULE:FACTORY",
                    help="run the shell property kit on factory(model) -> shell (module:factory or file.py:factory)")
    group.addoption("--shell-kit-profile", default="quick", choices=["quick", "thorough"],
                    help="examples per invariant: quick (15) or thorough (200)")
    group.addoption("--shell-kit-only", action="store_true", help="run only the shell kit's tests")
    group.addoption("--shell-kit-input-shape", default=None, metavar="C,H,W",
                    help="the input shape the shell is written for, e.g. 1,8,8")
    group.addoption("--shell-kit-data", default=None, help="draw inputs of this data set's shape (digits, mnist, ...)")


class ShellKitError(Exception):
    pass


class ShellKitItem(pytest.Item):
    def __init__(self, *, invariant, factory, profile, space, **kwargs) -> None:
        super().__init__(**kwargs)
        self.invariant, self.factory, self.profile, self.space = invariant, factory, profile, space

    def runtest(self) -> None:
        from robustness_eval.testing.kit import check_invariant

        verdict = check_invariant(self.factory, self.invariant, self.profile, space=self.space)
        if verdict.status == "fail":
            raise ShellKitError(f"{verdict.message}\nshrunk counterexample: {verdict.counterexample}")

    def repr_failure(self, excinfo, style=None) -> str:
        if isinstance(excinfo.value, ShellKitError):
            return f"{self.invariant.name}: {self.invariant.doc}\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"shell_kit::{self.invariant.name}"


def pytest_collection_modifyitems(session, config, items) -> None:
    spec = config.getoption("--shell-kit")
    if not spec:
        return
    from robustness_eval.testing.kit import applicable, input_space, load_factory

    try:
        space = input_space(config.getoption("--shell-kit-input-shape"), config.getoption("--shell-kit-data"))
        factory = load_factory(spec, space)
        invariants = applicable(factory, space)
    except (ValueError, FileNotFoundError) as error:
        raise pytest.UsageError(f"--shell-kit {spec}: {error}") from None
    kit = [ShellKitItem.from_parent(session, name=f"shell_kit::{inv.name}", invariant=inv, factory=factory,
                                    profile=config.getoption("--shell-kit-profile"), space=space)
           for inv in invariants]
    if config.getoption("--shell-kit-only"):
        config.hook.pytest_deselected(items=list(items))
        items[:] = kit
    else:
        items.extend(kit)
