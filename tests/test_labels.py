import pytest

from segkit.labels import COCO_CATEGORIES, class_name, parse_classes


def test_coco_ids_have_the_official_gaps():
    assert len(COCO_CATEGORIES) == 80
    assert 12 not in COCO_CATEGORIES and 26 not in COCO_CATEGORIES
    assert COCO_CATEGORIES[1] == "person" and COCO_CATEGORIES[90] == "toothbrush"


def test_parse_ids_names_and_mixes():
    assert parse_classes("1,18") == {1, 18}
    assert parse_classes("person, Dog") == {1, 18}
    assert parse_classes(["traffic_light", 3]) == {10, 3}
    assert parse_classes(None) is None and parse_classes("") is None


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean 'person'"):
        parse_classes("persn")


def test_unknown_id_is_refused():
    with pytest.raises(ValueError, match="unknown class id 12"):
        parse_classes("12")


def test_class_name_of_unknown_id_does_not_fail():
    assert class_name(18) == "dog" and class_name(999) == "class 999"


def test_list_classes_prints_every_id_and_name_of_a_coco_model(repo):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(repo / "bin" / "segment_image.py"), "--list-classes",
                          "--model", "mask_rcnn_inception_v2_coco_2018_01_28"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 80 and out[0].split() == ["1", "person"] and out[-1].split() == ["90", "toothbrush"]
