"""Released weights and their measured metrics, by zoo name. GENERATED -- do not edit by hand.

Written by train/bundle.py (bundled weights) and export/release.py (Hub weights) through
cifarzoo.releases.write_releases_module; tests/test_registry.py checks that this file is exactly what
cifarzoo.releases.render_releases_module renders for the objects below. To change a release, rerun the script.
"""

from cifarzoo.releases import RecipeRef, Release, WeightsSource

RELEASES = {
    "resnet26-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="resnet26-fm",
            revision=None,
            sha256={
                "model.safetensors": "f3dcdde00dbcebd2aa32913f0ef5c2d7833176e9e72db35c69d93f9d9e1e1b58",
                "model.onnx": "e1d78b9f4961d28c8f3fbf00370799b0ab7e4098711cb2a7004c68f369a5a71a",
                "config.json": "ae56c5bb7ad4c7e859512b33bfa3e8b992ac13fb6e6ebdf5a0b4bddccf867343",
            },
        ),
        metrics={
            "test": {
                "top1": 93.32,
                "top5": 99.92,
                "top1_flip_tta": 93.47,
                "ece": 0.0749,
            },
            "val": {
                "top1": 93.72,
            },
        },
        license="Apache-2.0",
        recipe=RecipeRef(
            name="resnet26-fm",
            variant=None,
            overrides=(),
        ),
        epochs=15,
        best_epoch=15,
    ),
}
