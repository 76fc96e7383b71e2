"""Released weights and their measured metrics, by zoo name. GENERATED -- do not edit by hand.

Written by train/bundle.py (bundled weights) and export/release.py (Hub weights) through
cifarzoo.releases.write_releases_module; tests/test_registry.py checks that this file is exactly what
cifarzoo.releases.render_releases_module renders for the objects below. To change a release, rerun the script.
"""

from cifarzoo.releases import RecipeRef, Release, WeightsSource

RELEASES = {
    "plain26-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="plain26-fm",
            revision=None,
            sha256={
                "model.safetensors": "1610df162fce53b15aa9951258c1ae0c0f6d37f8b8841d9cdf696b8d687e29b1",
                "config.json": "6314292484ff74fc9ffe6ae36ac743b4c99f2539361a3cb4f9e1d656fab41241",
            },
        ),
        metrics={
            "test": {
                "top1": 94.56,
                "top5": 99.96,
                "top1_flip_tta": 94.78,
                "ece": 0.0141,
                "uncalibrated_ece": 0.0824,
                "mca": 68.79,
                "mca_relative": 0.7275,
            },
            "val": {
                "top1": 94.42,
            },
        },
        license="Apache-2.0",
        recipe=RecipeRef(
            name="plain26-fm",
            variant=None,
            overrides=(
                "train.log_grad_norms=true",
            ),
        ),
        epochs=25,
        best_epoch=24,
    ),
    "plain34-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="plain34-fm",
            revision=None,
            sha256={
                "model.safetensors": "02468ee38e914de3f786caa082f8cd5481de648e104353bf5b1b38bb8b22a6f3",
                "config.json": "e5edb3e84fdae4cb7cee484c39faa9b5bec85c7e3cb2168308eaaa9f5f515922",
            },
        ),
        metrics={
            "test": {
                "top1": 93.81,
                "top5": 99.94,
                "top1_flip_tta": 94.08,
                "ece": 0.0167,
                "uncalibrated_ece": 0.0745,
                "mca": 69.46,
                "mca_relative": 0.7405,
            },
            "val": {
                "top1": 94.06,
            },
        },
        license="Apache-2.0",
        recipe=RecipeRef(
            name="plain34-fm",
            variant=None,
            overrides=(
                "train.log_grad_norms=true",
            ),
        ),
        epochs=25,
        best_epoch=25,
    ),
    "plain50-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="plain50-fm",
            revision=None,
            sha256={
                "model.safetensors": "0f0de354f4c5583f34f16f4b920ef40dc056ea6689ad2de656da25e4d1acf515",
                "config.json": "5187687d3598a359b30c351231ca7cfccf632ba69dcf7ae21919dacf559dc21f",
            },
        ),
        metrics={
            "test": {
                "top1": 93.34,
                "top5": 99.93,
                "top1_flip_tta": 93.54,
                "ece": 0.0147,
                "uncalibrated_ece": 0.0817,
                "mca": 65.7,
                "mca_relative": 0.7038,
            },
            "val": {
                "top1": 93.54,
            },
        },
        license="Apache-2.0",
        recipe=RecipeRef(
            name="plain50-fm",
            variant=None,
            overrides=(
                "train.log_grad_norms=true",
            ),
        ),
        epochs=25,
        best_epoch=23,
    ),
    "resnet26-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="resnet26-fm",
            revision=None,
            sha256={
                "model.safetensors": "7a6ba732de9d41e31839de3c30ff9a97a431bbbef81d497e621b6c0c8dfcac16",
                "config.json": "072079680f3b3ce78b45cc2c0bddf670712598ade12d73b2116bb48996015e02",
            },
        ),
        metrics={
            "test": {
                "top1": 94.03,
                "top5": 99.92,
                "top1_flip_tta": 94.27,
                "ece": 0.0174,
                "uncalibrated_ece": 0.0753,
                "mca": 69.25,
                "mca_relative": 0.7364,
            },
            "val": {
                "top1": 94.64,
            },
        },
        license="Apache-2.0",
        recipe=RecipeRef(
            name="resnet26-fm",
            variant=None,
            overrides=(
                "train.log_grad_norms=true",
            ),
        ),
        epochs=25,
        best_epoch=25,
    ),
    "resnet34-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="resnet34-fm",
            revision=None,
            sha256={
                "model.safetensors": "33eac1014d8952ff9d2a4be0bd1ec52d0fefbfc8384b72cc73ec5c3ed81e2906",
                "model.onnx": "958a7528ce8ba3d26d7c08726b41e9fc41d02a1746d034788bf82e90f728d172",
                "config.json": "c6685a838467b0a88faceeb39fa77c5e57520fcc4f7068d39dc5c3ceb28fab30",
            },
        ),
        metrics={
            "test": {
                "top1": 95.22,
                "top5": 99.91,
                "top1_flip_tta": 95.37,
                "ece": 0.0139,
                "uncalibrated_ece": 0.0736,
                "mca": 76.68,
                "mca_relative": 0.8053,
            },
            "val": {
                "top1": 95.42,
            },
        },
        license="Apache-2.0",
        recipe=RecipeRef(
            name="resnet34-fm",
            variant=None,
            overrides=(
                "train.epochs=35",
                "train.log_grad_norms=true",
            ),
        ),
        epochs=35,
        best_epoch=35,
    ),
    "resnet50-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="resnet50-fm",
            revision=None,
            sha256={
                "model.safetensors": "617378ba41f0d544500774160fdf93635fab88853d52e8659060e6bc5e6dd51a",
                "config.json": "50aed7e2442e1e1675c38587dd5970544a8d51d2d8f479828907822a0112eb0c",
            },
        ),
        metrics={
            "test": {
                "top1": 94.63,
                "top5": 99.97,
                "top1_flip_tta": 94.74,
                "ece": 0.0153,
                "uncalibrated_ece": 0.0751,
                "mca": 73.05,
                "mca_relative": 0.772,
            },
            "val": {
                "top1": 94.88,
            },
        },
        license="Apache-2.0",
        recipe=RecipeRef(
            name="resnet50-fm",
            variant=None,
            overrides=(
                "train.log_grad_norms=true",
            ),
        ),
        epochs=25,
        best_epoch=25,
    ),
}
