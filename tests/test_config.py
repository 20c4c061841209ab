"""Option defaults: the packaged defaults.yaml, then --config FILE, then flags; one place in code."""
from __future__ import annotations

import numpy as np
import pytest

from segkit import cli
from segkit.commands.image import build_parser
from segkit.config import DEFAULTS, DEFAULTS_FILE, apply_config, load_config
from segkit.errors import UsageError
from segkit.segmentation import Segmentation


def _args(argv):
    parser = build_parser()
    apply_config(parser, argv)
    return parser.parse_args(argv)


def _many_instances(n=150, size=8):
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.6, 1.0, n).astype(np.float32)  # all above the default threshold
    return Segmentation(size, size, masks=np.ones((n, size, size), bool),
                        boxes=np.tile(np.float32([0, 0, size, size]), (n, 1)),
                        class_ids=np.ones(n, np.int32), scores=scores)


def test_defaults_are_the_packaged_file_and_read_only():
    import yaml

    assert DEFAULTS_FILE.name == "defaults.yaml" and DEFAULTS_FILE.is_file()
    assert dict(DEFAULTS) == yaml.safe_load(DEFAULTS_FILE.read_text())
    assert {"threshold", "max_instances", "alpha", "max_pixels", "output"} <= set(DEFAULTS)
    with pytest.raises(TypeError):
        DEFAULTS["threshold"] = 0.1  # type: ignore[index]


def test_without_a_config_instance_models_keep_a_capped_best_first_list():
    args = _args(["-i", "x.jpg"])
    assert args.threshold == DEFAULTS["threshold"] and args.max_instances == DEFAULTS["max_instances"]
    seg = _many_instances()
    kept = cli.build_filter(args)(seg)
    assert len(kept) == DEFAULTS["max_instances"] < len(seg)
    np.testing.assert_array_equal(kept.scores, np.sort(seg.scores)[::-1][:len(kept)])


def test_config_file_overrides_the_defaults_and_flags_override_both(tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("threshold: 0.8\nmax_instances: 7\n")
    args = _args(["-i", "x.jpg", "--config", str(cfg)])
    assert (args.threshold, args.max_instances, args.alpha) == (0.8, 7, DEFAULTS["alpha"])
    assert len(cli.build_filter(args)(_many_instances())) == 7
    args = _args(["-i", "x.jpg", "--config", str(cfg), "--threshold", "0.65", "--max-instances", "3"])
    assert (args.threshold, args.max_instances) == (0.65, 3)
    # a config that names only some keys keeps the packaged defaults for the rest (the cap too)
    cfg.write_text("alpha: 0.2\n")
    assert load_config(cfg)["max_instances"] == DEFAULTS["max_instances"]


@pytest.mark.parametrize("text, problem", [("threshold: [0.5\n", "invalid YAML"),
                                           ("- 1\n- 2\n", "expected a mapping")])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, text, problem):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=f"^{cfg}: {problem}"):
        load_config(cfg)
    with pytest.raises(UsageError, match=f"^{tmp_path / 'none.yaml'}: config file not found$"):
        load_config(tmp_path / "none.yaml")


class _Model:
    def __init__(self, semantic):
        self.semantic = semantic


def test_the_default_threshold_is_stated_once_per_kind_of_model():
    from segkit.config import default_threshold

    assert DEFAULTS["threshold"] is None  # not given: the model's kind decides
    assert default_threshold(False) == DEFAULTS["default_threshold"]["instance"] == 0.25  # Ultralytics' conf
    assert default_threshold(True) == DEFAULTS["default_threshold"]["semantic"] == 0.5
    assert Segmentation(2, 2, probs=np.zeros((2, 2, 1), np.float32), prob_class_ids=(1,)).mask_threshold == 0.5
    text = build_parser().format_help()
    assert "0.25 for instance models" in " ".join(text.split())
    assert "0.5 for person" in " ".join(text.split())


def test_without_threshold_an_instance_model_keeps_scores_from_0_25_and_a_flag_overrides_it():
    scores = np.float32([0.9, 0.4, 0.3, 0.2])
    seg = Segmentation(4, 4, masks=np.ones((4, 4, 4), bool), boxes=np.tile(np.float32([0, 0, 4, 4]), (4, 1)),
                       class_ids=np.ones(4, np.int32), scores=scores)
    default = cli.build_filter(_args(["-i", "x.jpg"]))
    assert default.for_model(_Model(semantic=False)).threshold == 0.25
    assert default.for_model(_Model(semantic=True)).threshold == 0.5
    kept = default.for_model(_Model(semantic=False))(seg)
    np.testing.assert_array_equal(kept.scores, scores[:3])
    given = cli.build_filter(_args(["-i", "x.jpg", "--threshold", "0.5"])).for_model(_Model(semantic=False))
    np.testing.assert_array_equal(given(seg).scores, scores[:1])


def test_a_semantic_model_without_threshold_cuts_its_probabilities_at_0_5():
    from segkit.flow import segment
    from segkit.io.sources import Frame

    class Semantic(_Model):
        name = "probs"

        def segment(self, images, min_score=0.0):
            probs = np.float32([[0.3, 0.45], [0.55, 0.9]])[..., None]
            return [Segmentation(2, 2, probs=probs, prob_class_ids=(1,))]

    (seg,) = segment(Semantic(semantic=True), [Frame(np.zeros((2, 2, 3), np.uint8), "x")],
                     cli.build_filter(_args(["-i", "x.jpg"])))
    np.testing.assert_array_equal(seg.foreground(), [[False, False], [True, True]])


def test_config_with_yaml_aliases_is_refused_in_one_line(tmp_path):
    # nested aliases ("billion laughs") expand exponentially once a value is printed or walked
    cfg = tmp_path / "bomb.yaml"
    levels = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    cfg.write_text("\n".join(levels) + "\nclasses: [" + ", ".join(["*l8"] * 9) + "]\n")
    with pytest.raises(UsageError) as e:
        load_config(cfg)
    assert str(e.value) == (f"{cfg}: invalid YAML (YAML alias at line 2: aliases (*name) are not allowed "
                            "here (nested ones expand exponentially); write the value out)")
