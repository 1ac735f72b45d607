"""Every example runs (in its quick mode), so none can rot; key claims of each are checked."""

import pathlib
import runpy
import warnings

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# example -> text its output must contain (a number-free part of each answer)
EXPECTED = {
    "invert_classifier.py": ["MAP (best of several starts)", "true rule says 0", "Posterior p(x | class k)"],
    "deconvolution.py": ["Tikhonov, λ by GCV", "MAP, total-variation prior", "90% band holds"],
    "tomography.py": ["MAP, total variation", "best here: total variation"],
    "data_assimilation_lorenz96.py": ["4D-Var analysis RMSE", "converged", "from the analysis"],
    "batch_inversion.py": ["100.00% converged", "batched results match one-at-a-time solves"],
    "custom_forward_model.py": ["MAP:  omega=", "posterior (NUTS)"],
    "regularization_choice.py": ["gcv", "lcurve", "discrepancy", "oracle"],
    "learned_prior_digits.py": ["MAP, Gaussian prior", "MAP, total variation", "MAP, learned decoder prior",
                                "best here:"],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_quick(name, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JINVERSE_QUICK", "1")
    monkeypatch.setenv("JINVERSE_OUT", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short quick-mode chains warn about ESS, as they should
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    for needle in EXPECTED[name]:
        assert needle in out, out
    if "wrote" in out:
        assert any(p.suffix == ".png" and p.stat().st_size > 5000 for p in tmp_path.iterdir())
