"""Face and pose adapters: schemas, renderers against expected pixels, missing joints, registry, parsers."""

import json

import numpy as np
import pytest

from echokdm.adapters import Adapter, available_adapters, get_adapter, register_adapter
from echokdm.adapters.face import (
    FACE_COLOURS,
    FACE_FLIP_PERMUTATION,
    FACE_LINES,
    FACE_SCHEMA,
    detect_landmarks,
)
from echokdm.adapters.face import render_keypoints as render_face
from echokdm.adapters.pose import (
    BODY_25_LIMBS,
    BODY_25_NAMES,
    BODY_25_SCHEMA,
    COCO_18_LIMBS,
    COCO_18_SCHEMA,
    pose_thickness,
    render_body25,
    render_coco18,
)
from echokdm.errors import MissingDependencyError


def test_face_schema_has_the_papers_11_lines():
    assert FACE_SCHEMA.n_keypoints == 68 and len(FACE_LINES) == 11
    covered = sorted({i for line in FACE_LINES.values() for i in line})
    assert covered == list(range(68))  # every landmark is on a line
    assert FACE_LINES["right eye"][0] == FACE_LINES["right eye"][-1] == 36  # closed loops
    assert len(set(FACE_COLOURS.values())) == 11
    # 16 jaw + 4 + 4 brows + 3 bridge + 4 nose + 6 + 6 eyes + 6 + 6 outer + 4 + 4 inner lip segments
    assert len(FACE_SCHEMA.edges) == 63


def test_face_flip_permutation_is_an_involution_with_ibug_pairs():
    perm = np.array(FACE_FLIP_PERMUTATION)
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[0] == 16 and perm[8] == 8 and perm[17] == 26 and perm[36] == 45 and perm[39] == 42
    assert perm[48] == 54 and perm[51] == 51 and perm[57] == 57 and perm[60] == 64 and perm[66] == 66
    assert all(perm[i] == i for i in range(27, 31))  # nose bridge on the midline


_OPEN_LINES = ("lower face contour", "right eyebrow", "left eyebrow", "nose bridge", "nose bottom")


def _face_on_grid() -> np.ndarray:
    """The five lines that share no landmark, each horizontal on its own row (2 + 2·line), integer
    pixels; the other landmarks missing."""
    kp = np.full((68, 2), np.nan)
    for row, name in enumerate(_OPEN_LINES):
        for col, i in enumerate(FACE_LINES[name]):
            kp[i] = (4 + 3 * col, 2 + 2 * row)
    return kp


def test_face_renderer_lines_in_their_colours():
    kp = _face_on_grid()
    image = render_face(kp, (24, 56))
    assert image.shape == (3, 24, 56) and image.dtype == np.float32
    for row, name in enumerate(_OPEN_LINES):
        np.testing.assert_array_equal(image[:, 2 + 2 * row, 6], np.array(FACE_COLOURS[name], np.float32), err_msg=name)
        np.testing.assert_array_equal(image[:, 3 + 2 * row, 6], 0.0)  # 1 px wide: the next row is black
    assert image[:, :, 0:3].max() == 0.0  # nothing left of the first landmark (x = 4)
    assert image[:, 12:].max() == 0.0  # the missing lines (eyes, lips) are not drawn


def test_face_renderer_lips():
    kp = np.full((68, 2), np.nan)
    kp[48:55] = [(10 + 2 * i, 10) for i in range(7)]  # outer upper lip along row 10
    kp[55:60] = [(20 - 2 * i, 14) for i in range(5)]  # outer lower lip back along row 14
    image = render_face(kp, (20, 32))
    np.testing.assert_array_equal(image[:, 10, 13], np.array(FACE_COLOURS["outer upper lip"], np.float32))
    np.testing.assert_array_equal(image[:, 14, 15], np.array(FACE_COLOURS["outer lower lip"], np.float32))
    assert image[:, 12, 9:12].max() > 0  # the lower lip closes from 59 back to 48 (the left corner)


def test_face_renderer_eye_loop_and_nan():
    kp = np.full((68, 2), np.nan)
    kp[36:42] = [[10, 10], [12, 8], [14, 8], [16, 10], [14, 12], [12, 12]]
    image = render_face(kp, (20, 24))
    colour = np.array(FACE_COLOURS["right eye"], np.float32)
    np.testing.assert_array_equal(image[:, 8, 13], colour)  # upper lid 37-38
    np.testing.assert_array_equal(image[:, 12, 13], colour)  # lower lid 40-41
    np.testing.assert_allclose(image[:, 11, 11], colour * image[:, 11, 11].max(), atol=1e-6)  # closing edge 41-36
    assert image[:, 10, 13].max() == 0.0  # inside the eye
    kp[38] = np.nan  # the upper lid breaks at landmark 38
    broken = render_face(kp, (20, 24))
    assert broken[:, 8, 13].max() == 0.0 and broken[:, 12, 13].max() > 0
    assert broken[:, :2, :2].max() == 0.0  # never at the origin


def test_pose_schemas_match_openpose():
    assert BODY_25_SCHEMA.n_keypoints == 25 and len(BODY_25_SCHEMA.lines) == 24
    assert COCO_18_SCHEMA.n_keypoints == 18 and len(COCO_18_SCHEMA.lines) == 17
    assert BODY_25_LIMBS[0] == (1, 8) and COCO_18_LIMBS[-1] == (15, 17)
    # OpenPose colours a limb by its second joint: Neck-MidHip takes MidHip's (255, 0, 0)
    assert BODY_25_SCHEMA.colours["Neck-MidHip"] == (1.0, 0.0, 0.0)
    assert BODY_25_SCHEMA.colours["RShoulder-RElbow"] == (1.0, 170 / 255, 0.0)  # RElbow
    perm = np.array(BODY_25_SCHEMA.flip_permutation)
    assert BODY_25_NAMES[perm[2]] == "LShoulder" and BODY_25_NAMES[perm[21]] == "RHeel" and perm[8] == 8
    np.testing.assert_array_equal(perm[perm], np.arange(25))


def _standing_body25() -> np.ndarray:
    kp = np.full((25, 2), np.nan)
    kp[1], kp[8] = (20, 10), (20, 30)  # neck, mid-hip: a vertical torso at x = 20
    kp[2], kp[3] = (14, 10), (14, 20)  # right shoulder, right elbow: a vertical upper arm at x = 14
    return kp


def test_body25_limbs_in_openpose_colours_and_thickness():
    image = render_body25(_standing_body25(), (40, 40))
    np.testing.assert_array_equal(image[:, 20, 20], [1.0, 0.0, 0.0])  # Neck-MidHip (MidHip red)
    np.testing.assert_allclose(image[:, 15, 14], [1.0, 170 / 255, 0.0], atol=1e-6)  # RShoulder-RElbow
    np.testing.assert_allclose(image[:, 10, 17], [1.0, 85 / 255, 0.0], atol=1e-6)  # Neck-RShoulder (RShoulder)
    assert image[:, 20, 21].max() == 0.0  # 1 px wide at 40x40
    assert pose_thickness((224, 224)) == 2.0 and pose_thickness((64, 64)) == 1.0
    wide = render_body25(_standing_body25() * 224 / 40, (224, 224))
    x = round(20 * 224 / 40)
    np.testing.assert_allclose(wide[0, 100, x - 2: x + 3], [0.0, 0.5, 1.0, 0.5, 0.0])  # 2 px: coverage sums to 2


def test_missing_joints_are_skipped_not_drawn_at_origin():
    kp = _standing_body25()
    kp[3] = np.nan  # elbow not found
    image = render_body25(kp, (40, 40))
    assert image[:, 15, 14].max() == 0.0  # no upper arm
    np.testing.assert_array_equal(image[:, 20, 20], [1.0, 0.0, 0.0])
    assert image[:, :3, :3].max() == 0.0
    zeros_as_missing = np.where(np.isnan(kp), 0.0, kp)  # what a careless reader would produce
    assert render_body25(zeros_as_missing, (40, 40))[:, :3, :3].max() > 0  # ... would draw to the origin


def test_coco18_renderer():
    kp = np.full((18, 2), np.nan)
    kp[1], kp[8] = (10, 5), (10, 25)  # neck to right hip (RHip = 8 in COCO)
    image = render_coco18(kp, (32, 32))
    np.testing.assert_allclose(image[:, 15, 10], [0.0, 1.0, 85 / 255], atol=1e-6)  # COCO colour of joint 8


def test_registry_and_adapter_objects(tmp_path):
    assert {"echo", "face", "pose", "pose_coco18"} <= set(available_adapters())
    face, pose, echo = get_adapter("face"), get_adapter("pose"), get_adapter("echo")
    assert (face.n_keypoints, pose.n_keypoints, echo.n_keypoints) == (68, 25, 40)
    assert face.default_config_path.is_file() and pose.default_config_path.is_file()
    assert echo.default_config_path.name == "kdm_112.yaml" and get_adapter("pose_coco18").default_config_path.is_file()
    assert get_adapter(face) is face
    with pytest.raises(ValueError, match="unknown keypoint adapter 'hand'; available: echo, face"):
        get_adapter("hand")
    np.testing.assert_array_equal(face.render(_face_on_grid(), (24, 56)), render_face(_face_on_grid(), (24, 56)))
    assert pose.render(_standing_body25(), (224, 224))[0].sum() > 2 * render_body25(
        _standing_body25(), (224, 224), thickness=1.0)[0].sum() * 0.9  # adapter default: 2 px at 224
    with pytest.raises(ValueError, match="exists"):
        register_adapter(face)


def test_adapter_parsers_and_writers(tmp_path):
    face, pose = get_adapter("face"), get_adapter("pose")
    kp = np.random.default_rng(0).uniform(0, 60, (68, 2))
    path = face.write_keypoints(tmp_path / f"f{face.keypoint_suffix}", kp)
    assert path.suffix == ".pts"
    np.testing.assert_allclose(face.read_keypoints(path)[0], kp, atol=1e-3)
    joints = _standing_body25()
    path = pose.write_keypoints(tmp_path / f"p{pose.keypoint_suffix}", joints)
    assert json.loads(path.read_text())["people"][0]["pose_keypoints_2d"][:3] == [0.0, 0.0, 0.0]  # nose missing
    np.testing.assert_allclose(pose.read_keypoints(path)[0], joints)
    with pytest.raises(ValueError, match="68, 2"):
        face.check_keypoints(np.zeros((25, 2)))


def test_data_config_check_fills_defaults_and_rejects_other_domains():
    class Data:
        keypoints = flows = flow_cache = None

    data = Data()
    get_adapter("face").check_data_config(data)
    assert (data.keypoints, data.flows) == ("files", "dataset")
    echo = Data()
    get_adapter("echo").check_data_config(echo)
    assert (echo.keypoints, echo.flows) == ("phantom", "phantom")
    echo.keypoints = "files"
    with pytest.raises(ValueError, match="data.keypoints: 'files' is not available for adapter 'echo'"):
        get_adapter("echo").check_data_config(echo)
    data.flows = "cache"
    with pytest.raises(ValueError, match="flow_cache"):
        get_adapter("face").check_data_config(data)


def test_face_detection_without_the_optional_packages_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("face_alignment") or importlib.util.find_spec("dlib"):
        pytest.skip("a face detector is installed")
    with pytest.raises(MissingDependencyError, match="face-alignment"):
        detect_landmarks(np.zeros((1, 32, 32)))
    with pytest.raises(MissingDependencyError, match="OpenPose"):
        get_adapter("pose").detect_keypoints(np.zeros((1, 32, 32)))


def test_custom_adapter_plugs_into_the_registry():
    from echokdm.adapters import KeypointSchema, SequenceAdapter

    tri = KeypointSchema(name="tri", keypoint_names=("a", "b", "c"), lines={"edge": (0, 1, 2)},
                         colours={"edge": (0.0, 0.5, 1.0)}, flip_permutation=(2, 1, 0))
    adapter = register_adapter(SequenceAdapter("tri_test", tri, "face/kdm_tiny.yaml"), overwrite=True)
    assert isinstance(get_adapter("tri_test"), Adapter) and "tri_test" in available_adapters()
    np.testing.assert_allclose(adapter.render(np.array([[2.0, 2.0], [10.0, 2.0], [10.0, 8.0]]), (12, 12))[:, 2, 6],
                               [0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", ["face/kdm_224.yaml", "face/kdm_64_cpu.yaml", "face/kdm_tiny.yaml",
                                  "pose/kdm_224.yaml", "pose/kdm_224_coco18.yaml", "pose/kdm_tiny.yaml"])
def test_face_and_pose_configs_load(name):
    from echokdm.adapters.base import CONFIGS_DIR
    from echokdm.training.kdm import load_kdm_config

    config = load_kdm_config(CONFIGS_DIR / name)
    assert config.data.adapter == name.split("/")[0] or config.data.adapter == "pose_coco18"
    assert (config.data.keypoints, config.data.flows) == ("files", "dataset")
    if "224" in name:
        assert config.data.size == 224
        assert get_adapter(config.data.adapter).default_config_path.name.startswith("kdm_224")
    with pytest.raises(ValueError, match="not available for adapter"):
        load_kdm_config(CONFIGS_DIR / name, {"data": {"keypoints": "phantom"}})
