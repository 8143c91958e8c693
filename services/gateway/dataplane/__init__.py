"""The data plane: the Open Inference Protocol (v2) in front of every endpoint.

- `api`: the `/v2` routes, and `infer_call`, which routes, forwards and logs one inference;
- `fast_path`: the ASGI layer that answers `POST …/infer` ahead of the middleware stack;
- `plane`: per-process state — the route cache, the HTTP pool, the inference-log publisher;
- `projections`: the gateway's own routing tables, folded from the endpoint and model-serving
  contexts' events (no other service's table is read);
- `tensors`: the tensor codec (binary-tensor extension to and from JSON);
- `model_config`: Triton's model configuration of an endpoint's model, as JSON.
"""
