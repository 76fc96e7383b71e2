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
                "model.safetensors": "9ab0ea2d066bf01ef7514242480f71587c68a0196ef4bd31bef1d6ebce5c47c8",
                "config.json": "9e588d759e970d0b0a0a7f79a928fdc5f11b967662c038e7e84dcb82fe0fd28c",
            },
        ),
        metrics={
            "test": {
                "top1": 94.56,
                "top5": 99.96,
                "top1_flip_tta": 94.78,
                "ece": 0.0141,
                "uncalibrated_ece": 0.0824,
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
    "resnet26-fm": Release(
        source=WeightsSource(
            kind="bundled",
            location="resnet26-fm",
            revision=None,
            sha256={
                "model.safetensors": "d10ce9b1e3c5648c82c215868362cab75e9df2108c9b3acaf6a091c49e950fcd",
                "model.onnx": "c1579db51d90c79d27615d37ed7640c8c29d9f3eb8305de6365c8b4108939eb5",
                "config.json": "2b803b50d3ffabfa547c4876ea8f50bedc4feb31ef5395b0bfee5dc31681eaca",
            },
        ),
        metrics={
            "test": {
                "top1": 94.03,
                "top5": 99.92,
                "top1_flip_tta": 94.27,
                "ece": 0.0174,
                "uncalibrated_ece": 0.0753,
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
}
