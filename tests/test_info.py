import json

import qgfast
from qgfast import cli


def test_info_is_json_serialisable_and_complete() -> None:
    report = qgfast.info()
    json.dumps(report)
    assert set(report) >= {"versions", "platform", "devices", "backends", "native"}
    assert report["versions"]["qgfast"] == qgfast.__version__
    assert report["backends"]["reference"] is True


def test_native_report_when_extension_is_missing(monkeypatch) -> None:
    import builtins

    from qgfast import _info

    real_import = builtins.__import__

    def no_native(name, globals=None, locals=None, fromlist=(), level=0):
        if fromlist and "_native" in fromlist:
            raise ImportError("simulated missing extension")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_native)
    report = _info.native_report()
    assert report == {"available": False, "error": "ImportError: simulated missing extension"}


def test_cli_info_prints_backends(capsys) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends:" in out
    assert "reference" in out
    assert "native:" in out


def test_cli_info_json(capsys) -> None:
    assert cli.main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["native"]["available"] is True


def test_cli_offers_only_real_commands(capsys) -> None:
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    expected = {"info", "synthetic", "train-quality", "eval-quality", "train", "predict"}
    expected |= {"demo", "bench", "nnunet"}
    assert set(choices) == expected
