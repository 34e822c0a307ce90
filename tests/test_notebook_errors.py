"""A SlotlabError raised in an IPython cell shows its one-line message; other errors keep their traceback."""

import sys

import pytest

from slotlab import notebook_errors

pytest.importorskip("IPython")

CELL = """
def load():
    raise SlotlabError("dataset 'mnst' is unknown; choose one of mnist, cifar10")

load()
"""


@pytest.fixture(scope="module")
def ipython(tmp_path_factory: pytest.TempPathFactory):
    """A real IPython shell (the InteractiveShell singleton), gone again after this module's tests."""
    import builtins

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    names = set(vars(builtins))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
        shell = InteractiveShell.instance(config=config, colors="nocolor")
        shell.run_cell("from slotlab.errors import DataError, SlotlabError", store_history=False)
        yield shell
        InteractiveShell.clear_instance()  # IPython.get_ipython() is None again for the tests that follow
        for name in set(vars(builtins)) - names:  # __IPYTHON__, display
            delattr(builtins, name)


@pytest.fixture
def shell(ipython, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(notebook_errors.DEBUG_VARIABLE, raising=False)
    ipython.set_custom_exc((), None)
    yield ipython
    ipython.set_custom_exc((), None)


def _run(shell, cell: str, capsys: pytest.CaptureFixture) -> tuple[str, str, BaseException | None]:
    result = shell.run_cell(cell, store_history=False)
    out, err = capsys.readouterr()
    return out, err, result.error_in_exec


def test_a_slotlab_error_shows_its_one_line_message_alone(shell, capsys: pytest.CaptureFixture) -> None:
    assert notebook_errors.install(shell)
    out, err, error = _run(shell, CELL, capsys)
    assert err == "SlotlabError: dataset 'mnst' is unknown; choose one of mnist, cifar10\n"
    assert out == ""
    assert "Traceback" not in out + err
    assert type(error).__name__ == "SlotlabError"  # the cell still fails
    assert sys.last_value is error  # so that %tb and %debug still reach the traceback
    out, err, _ = _run(shell, "raise DataError('image a.JPEG cannot be decoded')", capsys)
    assert err == "DataError: image a.JPEG cannot be decoded\n"  # subclasses too, under their own name


def test_other_exceptions_keep_their_traceback(shell, capsys: pytest.CaptureFixture) -> None:
    assert notebook_errors.install(shell)
    out, err, error = _run(shell, "def f():\n    return 1 / 0\n\nf()", capsys)
    assert isinstance(error, ZeroDivisionError)
    assert "Traceback" in out + err and "ZeroDivisionError" in out + err and "return 1 / 0" in out + err


def test_slotlab_debug_gives_the_traceback(shell, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    assert notebook_errors.install(shell)
    monkeypatch.setenv(notebook_errors.DEBUG_VARIABLE, "1")
    out, err, _ = _run(shell, CELL, capsys)
    text = out + err
    assert "Traceback" in text and "load()" in text and "dataset 'mnst' is unknown" in text


def test_without_a_traceback_handler_ipython_shows_the_wall(shell, capsys: pytest.CaptureFixture) -> None:
    out, err, _ = _run(shell, CELL, capsys)  # what install() fixes
    assert "Traceback" in out + err


def test_install_is_a_no_op_outside_ipython_and_keeps_another_handler(shell) -> None:
    import IPython

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(IPython, "get_ipython", lambda: None)
        assert notebook_errors.install() is False
        patch.setitem(sys.modules, "IPython", None)  # IPython not installed: the import fails
        assert notebook_errors.install() is False
    assert notebook_errors.install() is True  # the running shell, found by IPython.get_ipython()
    assert notebook_errors.install(shell) is True  # twice is harmless
    assert shell.custom_exceptions == (notebook_errors.SlotlabError,)
    shell.set_custom_exc((KeyError,), lambda *args, **kwargs: None)
    assert notebook_errors.install(shell) is False  # IPython keeps one handler: someone else's stays
    assert shell.custom_exceptions == (KeyError,)
