"""Read the signature of a scikit-learn model saved with joblib: `python -m
services.triton_manager.inspect_joblib PATH` prints JSON.

Loading a joblib file runs code from it (it is a pickle), exactly as the model server that will
serve it does. So the registry never loads one in its own process: it runs this module in a
sandboxed child (resource limits, no platform environment, a timeout) and reads what it prints.
"""

from __future__ import annotations

import json
import sys


def signature(model) -> dict:
    classes = getattr(model, "classes_", None)
    n_features = getattr(model, "n_features_in_", None)
    label_kind = None
    if classes is not None:
        kind = getattr(getattr(classes, "dtype", None), "kind", "O")
        label_kind = {"i": "int", "u": "int", "f": "float", "b": "bool"}.get(kind, "string")
    return {
        "estimator": type(model).__name__,
        "n_features": int(n_features) if n_features is not None else None,
        "classes": len(classes) if classes is not None else None,
        "label_kind": label_kind,
        "proba": hasattr(model, "predict_proba") and classes is not None,
        "predict": hasattr(model, "predict"),
    }


def main(path: str) -> int:
    import joblib

    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as the reason
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]}))
        return 2
    print(json.dumps(signature(model)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
