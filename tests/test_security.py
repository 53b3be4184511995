"""No weight file or dataset pickle can run code (hardening issue, security item).

The forged file ``fixtures/forged-prefix-inception.pth`` (and its AlexNet twin) is a pickle whose payload calls
``exec`` (it writes the file named by ``$INVBENCH_PAYLOAD_MARKER``), followed by a 16-byte nonce
that pickle ignores; the nonce was searched so that the file's SHA-256 *starts with* the
published Inception prefix ``6726825d`` (a loop over OpenSSL's SHA-256 in C: about 3e8 tries,
30 s on one core). A prefix check accepts it; a full-digest check must not. Every test sets the
marker variable, so a payload that ran would leave the file behind.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from invbench import cli, safe_pickle
from invbench.errors import DataError
from invbench.metrics import weights as MW

FIXTURES = Path(__file__).parent / "fixtures"
FORGED = FIXTURES / "forged-prefix-inception.pth"
FORGED_ALEXNET = FIXTURES / "forged-prefix-alexnet.pth"  # the same payload, prefix 7be5be79


class _Payload:
    def __reduce__(self):
        code = "import os\nopen(os.environ['INVBENCH_PAYLOAD_MARKER'], 'w').write('ran')\n"
        return (exec, (code,))


def malicious_pickle() -> bytes:
    return pickle.dumps(_Payload(), protocol=2)


@pytest.fixture()
def marker(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "payload-ran"
    monkeypatch.setenv("INVBENCH_PAYLOAD_MARKER", str(path))
    return path


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setenv("INVBENCH_WEIGHTS", str(d))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return d


def test_the_payload_is_real(marker) -> None:
    # The fixture's payload does run when unpickled with code: the tests below are not vacuous.
    pickle.loads(FORGED.read_bytes())
    assert marker.read_text() == "payload executed"


def test_forged_prefix_file_is_refused_everywhere(weights_dir, marker, capsys, tmp_path) -> None:
    digest = hashlib.sha256(FORGED.read_bytes()).hexdigest()
    assert digest.startswith(MW.INCEPTION.sha256[:8]) and digest != MW.INCEPTION.sha256
    for name in MW.INCEPTION.names:
        (weights_dir / name).write_bytes(FORGED.read_bytes())
    # `weights check` reports the full-digest mismatch and fails.
    assert cli.main(["weights", "check", "inception"]) == 1
    out = capsys.readouterr().out
    assert f"sha256 {digest}, expected {MW.INCEPTION.sha256}" in out
    # The metric lookup and the run refuse it before any work (exit 2, nothing written).
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        MW.find_weights(MW.INCEPTION)
    out_dir = tmp_path / "out"
    code = cli.main(["run", "--method", "creswell", "--out", str(out_dir), "--set", "steps=1"])
    err = capsys.readouterr().err
    assert code == 2 and "SHA-256 mismatch" in err and "Traceback" not in err
    assert not out_dir.exists()
    assert not marker.exists()


def test_forged_prefix_alexnet_is_refused_by_lpips(weights_dir, marker) -> None:
    from invbench.metrics.perceptual import load_lpips

    digest = hashlib.sha256(FORGED_ALEXNET.read_bytes()).hexdigest()
    assert digest.startswith(MW.ALEXNET.sha256[:8]) and digest != MW.ALEXNET.sha256
    (weights_dir / MW.ALEXNET.names[0]).write_bytes(FORGED_ALEXNET.read_bytes())
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_lpips("cpu")
    assert not marker.exists()


@pytest.mark.parametrize(
    "spec", [MW.ALEXNET, MW.INCEPTION, MW.VGG16, MW.LPIPS_ALEX_LINEAR], ids=lambda s: s.names[0]
)
def test_a_malicious_pickle_under_every_weight_name_is_refused(weights_dir, marker, spec) -> None:
    bad = malicious_pickle()
    for name in spec.names:
        (weights_dir / name).write_bytes(bad)
        with pytest.raises(DataError, match="SHA-256 mismatch"):
            MW.find_weights(spec)
        with pytest.raises(DataError, match="SHA-256 mismatch"):
            MW.load_state(spec, weights_dir / name)
        (weights_dir / name).unlink()
    # Even a file whose digest were listed is read as tensors only: the loader itself refuses.
    trusted = MW.WeightFile(spec.names, hashlib.sha256(bad).hexdigest(), spec.what, spec.url)
    (weights_dir / spec.names[0]).write_bytes(bad)
    with pytest.raises(DataError, match="needs code to unpickle"):
        MW.load_state(trusted, weights_dir / spec.names[0])
    assert not marker.exists()


def test_inception_is_built_without_torch_fidelitys_unpickler(
    weights_dir, marker, monkeypatch
) -> None:
    from invbench.metrics import features

    bad = malicious_pickle()
    path = weights_dir / MW.INCEPTION.names[0]
    path.write_bytes(bad)
    trusted = MW.WeightFile(MW.INCEPTION.names, hashlib.sha256(bad).hexdigest(), "", "")
    monkeypatch.setattr(features, "INCEPTION", trusted)
    with pytest.raises(DataError, match="needs code to unpickle"):
        features.InceptionNet(str(path), torch.device("cpu"))
    assert not marker.exists()


def test_inception_from_a_verified_file_equals_torch_fidelitys_network(
    weights_dir, monkeypatch
) -> None:
    # Random weights in the published layout: torch-fidelity's network with its default
    # initialisation is saved; the network invbench builds from that file is the same network.
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from invbench.metrics import features

    with monkeypatch.context() as m:  # construct without any weight file: default init
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        ref_net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = weights_dir / MW.INCEPTION.names[1]
    torch.save(ref_net.state_dict(), path)
    trusted = MW.WeightFile(
        MW.INCEPTION.names, hashlib.sha256(path.read_bytes()).hexdigest(), "", ""
    )
    monkeypatch.setattr(features, "INCEPTION", trusted)
    ours = features.InceptionNet(str(path), torch.device("cpu"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    with torch.no_grad():
        (ref,) = ref_net(u8)
    torch.testing.assert_close(ours.features(x), ref, rtol=0, atol=0)


def test_cifar10_batches_cannot_run_code(tmp_path, marker) -> None:
    from invbench.datasets.cifar10 import _read_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(malicious_pickle())
    with pytest.raises(
        DataError, match=r"refused, the file refers to (__builtin__|builtins)\.exec"
    ):
        _read_batch(path)
    assert not marker.exists()
    # A batch of the real structure reads (numpy arrays, lists, bytes).
    import numpy as np

    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"batch_label": b"x"}
    path.write_bytes(pickle.dumps(good, protocol=2))
    assert _read_batch(path)["labels"] == [1, 2]


def test_restricted_unpickler_allows_only_its_list(tmp_path, marker) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2.0, "s", b"b", (None, True)]}))
    assert safe_pickle.load(path, ()) == {"a": [1, 2.0, "s", b"b", (None, True)]}
    path.write_bytes(malicious_pickle())
    with pytest.raises(DataError, match=r"(__builtin__|builtins)\.exec"):
        safe_pickle.load(path, safe_pickle.NUMPY_ARRAYS)
    assert not marker.exists()
