"""An MLServer runtime for ONNX models, run by onnxruntime.

MLServer 1.7 ships no ONNX runtime, so the platform ships this one. It runs inside the managed
model server's own virtualenv (which has mlserver and onnxruntime, not mlplane): it imports
nothing from mlplane. The model settings name it as `mlplane_onnx.OnnxModel` and its folder is
put on the server's PYTHONPATH.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

ONNX_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self.settings, wellknown_filenames=["model.onnx"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._inputs = {
            i.name: ONNX_TO_NUMPY.get(i.type, np.float32) for i in self._session.get_inputs()
        }
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for request_input in payload.inputs:
            if request_input.name not in self._inputs:
                raise InferenceError(
                    f"model has no input {request_input.name!r}; "
                    f"its inputs are {sorted(self._inputs)}"
                )
            array = NumpyCodec.decode_input(request_input)
            feeds[request_input.name] = np.asarray(array).astype(
                self._inputs[request_input.name], copy=False
            )
        missing = sorted(set(self._inputs) - set(feeds))
        if missing:
            raise InferenceError(f"missing input(s) {missing}")
        wanted = [o.name for o in payload.outputs] if payload.outputs else self._outputs
        unknown = sorted(set(wanted) - set(self._outputs))
        if unknown:
            raise InferenceError(
                f"model has no output(s) {unknown}; its outputs are {self._outputs}"
            )
        results = self._session.run(wanted, feeds)
        outputs = [
            NumpyCodec.encode_output(name, np.asarray(value))
            for name, value in zip(wanted, results)
        ]
        return InferenceResponse(
            model_name=self.name, model_version=self.version, outputs=outputs, id=payload.id
        )
