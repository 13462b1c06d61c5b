import numpy as np
import onnx
import onnxruntime as ort
from devtools.shared import MODEL_PACK
from recognition_service.recognition.dequantize import dequantize_integer_ops


def test_int8_recogniser_becomes_float_with_nearly_the_same_embeddings():
    path = MODEL_PACK / "w600k_mbf_int8.onnx"
    data, rewritten = dequantize_integer_ops(str(path))
    assert rewritten == 50  # 49 ConvInteger + 1 MatMulInteger
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert not ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    original = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rewritten_session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    # Smooth random "faces" keep activations in a realistic range; real faces are compared in the API tests.
    x = rng.normal(size=(4, 3, 14, 14)).astype(np.float32).repeat(8, axis=2).repeat(8, axis=3) * 0.5
    a = original.run(None, {"input.1": x})[0]
    b = rewritten_session.run(None, {"input.1": x})[0]
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    assert (a * b).sum(axis=1).min() > 0.97


def test_float_models_are_left_alone():
    assert dequantize_integer_ops(str(MODEL_PACK / "det_500m.onnx")) is None
