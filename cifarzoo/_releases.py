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
                "model.safetensors": "d10ce9b1e3c5648c82c215868362cab75e9df2108c9b3acaf6a091c49e950fcd",
                "model.onnx": "e8ea945e783787d70c860f624056e2bced2496fbfd47641560aaf12a5aebf4f2",
                "config.json": "9cd03b66f10c0da87f575e09ea14001d8af305177c89a4d92b9ba33cf9f0f68c",
            },
        ),
        metrics={
            "test": {
                "top1": 94.03,
                "top5": 99.92,
                "top1_flip_tta": 94.27,
                "ece": 0.0753,
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
