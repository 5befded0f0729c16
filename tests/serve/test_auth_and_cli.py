"""Who gets in (bearer key off loopback, health open) and the `cnnkit serve` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor
from cnnkit.serve import ServeSettings
from serve_helpers import CLASSES, StreamedUpload, png_bytes, run, serving, upload

KEY = "k3y-0123456789abcdef"


def test_non_loopback_needs_a_key_or_an_explicit_no_auth() -> None:
    with pytest.raises(CnnkitError, match="0.0.0.0.*--api-key-file.*--no-auth"):
        ServeSettings(host="0.0.0.0")
    assert ServeSettings(host="0.0.0.0", allow_no_auth=True).api_key is None
    assert ServeSettings(host="::1").host == "::1" and ServeSettings(host="localhost").host == "localhost"
    with pytest.raises(CnnkitError, match="at least 16"):
        ServeSettings(api_key="short")
    with pytest.raises(CnnkitError, match="max_batch_size"):
        ServeSettings(max_batch_size=0)
    assert KEY not in repr(ServeSettings(api_key=KEY)), "the key stays out of logs and tracebacks"


def test_bearer_key_guards_the_model_but_not_health(predictor: Predictor) -> None:
    async def scenario():
        async with serving(predictor, host="0.0.0.0", api_key=KEY) as client:
            image = upload(png_bytes(1))
            return {
                "none": await client.post("/predict", **image),
                "wrong": await client.post("/predict", headers={"Authorization": "Bearer " + KEY[:-1] + "X"}, **image),
                "basic": await client.post("/predict", headers={"Authorization": "Basic " + KEY}, **image),
                "right": await client.post("/predict", headers={"Authorization": "Bearer " + KEY}, **image),
                "info": await client.get("/info"),
                "metrics": await client.get("/metrics"),
                "healthz": await client.get("/healthz"),
                "readyz": await client.get("/readyz"),
            }

    answers = run(scenario)
    for name in ("none", "wrong", "basic", "info", "metrics"):
        assert answers[name].status_code == 401, name
        assert answers[name].json()["error"] == "unauthorized"
        assert answers[name].headers["www-authenticate"] == "Bearer"
    assert answers["right"].status_code == 200
    assert answers["healthz"].status_code == 200 and answers["readyz"].status_code == 200


def test_a_request_without_the_key_is_refused_before_its_body_is_read(predictor: Predictor) -> None:
    chunk = 64 * 1024
    body = StreamedUpload(chunk=chunk, chunks=100)  # 6.4 MB if it were all read

    async def scenario():
        async with serving(predictor, host="0.0.0.0", api_key=KEY) as client:
            return await client.post("/predict", content=body.content(), headers=body.headers)

    refused = run(scenario)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert body.pulled <= chunk, f"{body.pulled} bytes of an unauthorised upload were read"


def test_cli_refuses_open_non_loopback_and_warns_with_no_auth(random_run: Path, tmp_path: Path, capsys,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    assert main(["serve", str(random_run), "--host", "0.0.0.0"]) == 2
    assert "--api-key-file" in capsys.readouterr().err
    assert not served

    assert main(["serve", str(random_run), "--host", "0.0.0.0", "--no-auth", "--port", "8123",
                 "--max-pixels", "40e6", "--max-batch-size", "4"]) == 0
    assert "WARNING" in capsys.readouterr().err
    state = served["app"].state.serve
    assert (served["host"], served["port"]) == ("0.0.0.0", 8123)
    assert state.settings.max_pixels == 40_000_000 and state.settings.max_batch_size == 4
    assert state.predictor.class_names == CLASSES and state.predictor.model_name == "compact_cnn"

    short = tmp_path / "short.key"
    short.write_text("abc\n")
    assert main(["serve", str(random_run), "--api-key-file", str(short)]) == 2
    assert str(short) in capsys.readouterr().err
    good = tmp_path / "good.key"
    good.write_text(KEY + "\n")
    assert main(["serve", str(random_run), "--host", "10.1.2.3", "--api-key-file", str(good)]) == 0
    assert served["app"].state.serve.settings.api_key == KEY


def test_cli_names_a_missing_model_a_missing_device_and_a_bad_onnx_file(random_run: Path, tmp_path: Path,
                                                                         capsys) -> None:
    assert main(["serve", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "absent: not a run directory" in err
    assert "http://" not in err  # no "serving on ..." banner for a server that never starts
    assert main(["serve", str(random_run), "--device", "cuda:7"]) == 2  # torch's AssertionError escaped before
    assert "--device 'cuda:7' is not usable here" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx" in capsys.readouterr().err
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx")
    assert main(["serve", str(model)]) == 2
    assert "model.onnx: not a readable ONNX file" in capsys.readouterr().err


def test_no_endpoint_reads_a_server_side_path_named_by_a_request(predictor: Predictor, tmp_path: Path) -> None:
    on_server = tmp_path / "secret.png"
    on_server.write_bytes(png_bytes(5))

    async def scenario():
        async with serving(predictor) as client:
            named_file = await client.post("/predict", **upload(b"name only", str(on_server)))
            named_field = await client.post("/predict", data={"file": str(on_server)},
                                            files={"other": ("x.txt", b"x", "text/plain")})
            return named_file, named_field

    named_file, named_field = run(scenario)
    assert named_file.status_code == 415, "the uploaded bytes are judged, never the file the name points to"
    assert named_field.status_code == 422


def test_numbers_that_are_not_finite_or_not_whole_are_refused_by_name(tmp_path: Path, capsys) -> None:
    """`--max-delay-ms nan` left every request to time out, `--max-upload-mb inf` and `--max-pixels inf`
    raised OverflowError, `--max-batch-size 1.5` became 1 without a word."""
    for name in ("max_upload_mb", "max_delay_ms", "timeout_s"):
        for value in (float("inf"), float("nan")):
            with pytest.raises(CnnkitError, match=f"{name} must be a finite number"):
                ServeSettings(**{name: value})
    for flag, value in (("--max-pixels", "inf"), ("--max-pixels", "1e400"), ("--max-batch-size", "1.5"),
                        ("--max-upload-mb", "inf"), ("--timeout-s", "nan")):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", str(tmp_path), flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max-delay-ms", "nan"]) == 2
    assert "max_delay_ms must be a finite number" in capsys.readouterr().err
