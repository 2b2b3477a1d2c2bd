"""The Open Inference Protocol (KServe V2 REST) wire format, as Triton speaks it.

Parsing an infer request body into typed tensors, encoding an infer response, and the metadata
documents, all from plain values: no FastAPI, no torch, no ONNX Runtime, so the route module
stays thin glue and every rule here can be tested on bytes alone.

A body is JSON, or (binary tensor data extension) a JSON header of `Inference-Header-Content-
Length` bytes followed by the binary data of the inputs that declare `binary_data_size`, in the
order they are listed. Fixed-size tensors are little-endian row-major; a BYTES tensor is each
element as a 4-byte little-endian length and its bytes. Every way a body can be wrong raises
`ProtocolError` (400), whose message names the tensor and the rule it broke.

Spec: https://github.com/kserve/open-inference-protocol (REST), with Triton's binary extension.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "onnxruntime_onnx"

# Datatype names → little-endian numpy dtypes (BYTES has none: a list of bytes objects).
DATATYPES: dict[str, np.dtype[Any] | None] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": None,
}
_DATATYPE_OF_DTYPE = {dtype.newbyteorder("="): name for name, dtype in DATATYPES.items() if dtype}
_LENGTH = struct.Struct("<I")

Data = np.ndarray | list[bytes]


class ProtocolError(ValueError):
    """The request breaks the protocol: answer 400 with `{"error": message}`."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_body(message: str) -> bytes:
    """The V2 error shape, which Triton's clients read (`{"error": "..."}`)."""
    return orjson.dumps({"error": message})


# -- tensors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorMetadata:
    """One input or output as the metadata documents it; -1 marks a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )


@dataclass(frozen=True)
class InferInput:
    """One input tensor of a request: a numpy array of `shape`, or a flat list of bytes (one
    per element, row-major) for BYTES."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Data
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; `binary` None means "as the request-level default"."""

    name: str
    binary: bool | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request. `outputs` None means all outputs, in the model's order."""

    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_data_output(self) -> bool:
        return self.parameters.get("binary_data_output") is True

    def input(self, name: str) -> InferInput | None:
        return next((tensor for tensor in self.inputs if tensor.name == name), None)


@dataclass(frozen=True)
class OutputTensor:
    """One output the server produced: a numpy array, or a flat list of bytes with `shape`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Data

    @classmethod
    def from_array(cls, name: str, array: np.ndarray) -> OutputTensor:
        datatype = _DATATYPE_OF_DTYPE.get(array.dtype.newbyteorder("="))
        if datatype is None:
            raise TypeError(f"output {name!r}: numpy dtype {array.dtype} has no V2 datatype")
        return cls(name, datatype, tuple(array.shape), array)

    @classmethod
    def from_texts(
        cls, name: str, texts: Sequence[str | bytes], shape: Sequence[int] | None = None
    ) -> OutputTensor:
        items = [t.encode() if isinstance(t, str) else t for t in texts]
        return cls(name, "BYTES", tuple(shape) if shape is not None else (len(items),), items)


# -- parsing a request ----------------------------------------------------------------------


def parse_infer_request(
    body: bytes,
    header_length: str | int | None = None,
    inputs: Mapping[str, TensorMetadata] | None = None,
) -> InferRequest:
    """Parse an infer request body; `header_length` is the `Inference-Header-Content-Length`
    header as sent (None when absent: the whole body is JSON).

    With `inputs` (the model's declared inputs by name), data for any other input, a different
    datatype or a shape the declaration does not allow is refused here, before any work.
    """
    json_size = _header_length(header_length, len(body))
    header = _json_object(body[:json_size])
    binary = memoryview(body)[json_size:]

    raw_inputs = _list_field(header, "inputs", "the request")
    if not raw_inputs:
        raise ProtocolError("`inputs` is empty; send at least one input tensor")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("`id` must be a string")
    parameters = _parameters(header, "the request")

    parsed: list[InferInput] = []
    offset = 0
    seen: set[str] = set()
    for position, raw in enumerate(raw_inputs):
        tensor, offset = _parse_input(raw, position, binary, offset)
        if tensor.name in seen:
            raise ProtocolError(f"input {tensor.name!r} is given twice")
        seen.add(tensor.name)
        if inputs is not None:
            _check_declared(tensor, inputs)
        parsed.append(tensor)
    if offset != len(binary):
        raise ProtocolError(
            f"the binary data after the JSON header is {len(binary)} bytes but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    return InferRequest(
        inputs=parsed,
        outputs=_requested_outputs(header),
        id=request_id,
        parameters=parameters,
    )


def _header_length(value: str | int | None, body_size: int) -> int:
    if value is None:
        return body_size
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {value!r}") from None
    if not 0 < size <= body_size:
        raise ProtocolError(
            f"{HEADER_LENGTH} is {size} but the body is {body_size} bytes; it must be the "
            "length of the JSON header at the start of the body"
        )
    return size


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the request header is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("the request header must be a JSON object")
    return value


def _list_field(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    if key not in obj:
        raise ProtocolError(f"{where} has no `{key}`")
    value = obj[key]
    if not isinstance(value, list):
        raise ProtocolError(f"`{key}` of {where} must be a list")
    return value


def _parameters(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    value = obj.get("parameters", {})
    if not isinstance(value, dict):
        raise ProtocolError(f"`parameters` of {where} must be an object")
    return value


def _name(obj: Any, what: str) -> str:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{what} has no `name`")
    return name


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in value
    ):
        raise ProtocolError(f"`shape` of {where} must be a list of non-negative integers")
    return tuple(value)


def _parse_input(
    raw: Any, position: int, binary: memoryview, offset: int
) -> tuple[InferInput, int]:
    """One entry of `inputs`; binary data is taken from `binary` at `offset`."""
    name = _name(raw, f"inputs[{position}]")
    where = f"input {name!r}"
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise ProtocolError(f"{where} has no `datatype`")
    if datatype not in DATATYPES:
        raise ProtocolError(
            f"{where} has unknown datatype {datatype!r}; known: {', '.join(DATATYPES)}"
        )
    if "shape" not in raw:
        raise ProtocolError(f"{where} has no `shape`")
    shape = _shape(raw["shape"], where)
    parameters = _parameters(raw, where)
    if any(key.startswith("shared_memory") for key in parameters):
        raise ProtocolError(f"{where}: shared memory is not supported; send the data")

    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(f"`binary_data_size` of {where} must be a non-negative integer")
        if "data" in raw:
            raise ProtocolError(f"{where} has both `data` and `binary_data_size`")
        if offset + size > len(binary):
            raise ProtocolError(
                f"{where} declares binary_data_size {size} but only {len(binary) - offset} "
                "bytes of binary data are left after the JSON header"
            )
        data = _from_binary(binary[offset : offset + size], datatype, shape, where)
        offset += size
    elif "data" in raw:
        data = _from_json(raw["data"], datatype, shape, where)
    else:
        raise ProtocolError(f"{where} has neither `data` nor `binary_data_size`")
    return InferInput(name, datatype, shape, data, parameters), offset


def _from_binary(chunk: memoryview, datatype: str, shape: tuple[int, ...], where: str) -> Data:
    count = math.prod(shape)
    dtype = DATATYPES[datatype]
    if dtype is None:
        items = _split_bytes(chunk, where)
        if len(items) != count:
            raise ProtocolError(
                f"{where} has {len(items)} BYTES elements but shape {list(shape)} holds {count}"
            )
        return items
    if len(chunk) != count * dtype.itemsize:
        raise ProtocolError(
            f"{where}: shape {list(shape)} of {datatype} is {count * dtype.itemsize} bytes "
            f"but binary_data_size is {len(chunk)}"
        )
    if datatype == "BOOL" and bytes(chunk).translate(None, b"\x00\x01"):
        raise ProtocolError(f"{where}: BOOL elements must be the bytes 0 or 1")
    return _reshaped(np.frombuffer(chunk, dtype=dtype), shape, where)


def _split_bytes(chunk: memoryview, where: str) -> list[bytes]:
    """BYTES binary data: each element a 4-byte little-endian length, then its bytes."""
    items: list[bytes] = []
    offset, end = 0, len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise ProtocolError(f"{where}: BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > end:
            raise ProtocolError(
                f"{where}: a BYTES element of {length} bytes runs past the end of its data"
            )
        items.append(bytes(chunk[offset : offset + length]))
        offset += length
    return items


def _flatten(data: Any) -> list[Any]:
    """JSON `data` may be flat or nested row-major; either way, its elements in order."""
    if not isinstance(data, list):
        return [data]
    if list not in set(map(type, data)):  # flat already (what tritonclient sends): C speed
        return data
    flat: list[Any] = []
    stack: list[Iterable[Any]] = [iter(data)]
    while stack:
        for element in stack[-1]:
            if isinstance(element, list):
                stack.append(iter(element))
                break
            flat.append(element)
        else:
            stack.pop()
    return flat


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], where: str) -> Data:
    elements = _flatten(data)
    count = math.prod(shape)
    if len(elements) != count:
        raise ProtocolError(
            f"{where} has {len(elements)} elements but shape {list(shape)} holds {count}"
        )
    dtype = DATATYPES[datatype]
    if dtype is None:
        if not all(isinstance(element, str) for element in elements):
            raise ProtocolError(f"{where}: BYTES elements in JSON must be strings")
        return [element.encode() for element in elements]
    return _reshaped(_numeric_array(elements, datatype, dtype, where), shape, where)


def _reshaped(flat: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """numpy refuses some shapes whose element count is right (over 64 axes, or an empty
    tensor with a dimension beyond its index range)."""
    try:
        return flat.reshape(shape)
    except (ValueError, OverflowError) as exc:
        raise ProtocolError(f"{where}: shape {list(shape)} is not usable: {exc}") from None


def _numeric_array(elements: list[Any], datatype: str, dtype: np.dtype[Any], where: str) -> Any:
    """JSON numbers as `dtype`, refusing what would change a value's kind or overflow. The
    element types are checked in one C-level pass (`set(map(type, ...))`): a per-element
    isinstance loop made a 784-pixel JSON tensor cost ~0.6 ms to parse."""
    types = set(map(type, elements))
    if datatype == "BOOL":
        allowed, kind = {bool}, "true or false"
    elif dtype.kind in "iu":
        allowed, kind = {int}, "integers"
    else:
        allowed, kind = {int, float}, "numbers"
    if not types <= allowed:
        example = next(element for element in elements if type(element) not in allowed)
        raise ProtocolError(f"{where}: {datatype} elements must be {kind}, got {example!r}")
    if dtype.kind in "iu" and elements:
        info = np.iinfo(dtype)
        if min(elements) < info.min or max(elements) > info.max:
            raise ProtocolError(f"{where}: a value is out of the range of {datatype}")
    with np.errstate(over="ignore"):  # FP16/FP32 overflow to inf, as a cast in C would
        return np.array(elements, dtype=dtype)


def _requested_outputs(header: Mapping[str, Any]) -> list[RequestedOutput] | None:
    if "outputs" not in header:
        return None
    raw_outputs = _list_field(header, "outputs", "the request")
    outputs: list[RequestedOutput] = []
    for position, raw in enumerate(raw_outputs):
        name = _name(raw, f"outputs[{position}]")
        where = f"requested output {name!r}"
        if any(o.name == name for o in outputs):
            raise ProtocolError(f"{where} is asked for twice")
        parameters = _parameters(raw, where)
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise ProtocolError(f"`binary_data` of {where} must be true or false")
        if parameters.get("classification"):
            raise ProtocolError(f"{where}: the classification extension is not supported")
        if any(key.startswith("shared_memory") for key in parameters):
            raise ProtocolError(f"{where}: shared memory is not supported")
        outputs.append(RequestedOutput(name, binary, parameters))
    return outputs


def _check_declared(tensor: InferInput, inputs: Mapping[str, TensorMetadata]) -> None:
    declared = inputs.get(tensor.name)
    if declared is None:
        raise ProtocolError(
            f"data for unknown input {tensor.name!r}; this model's inputs: {', '.join(inputs)}"
        )
    if tensor.datatype != declared.datatype:
        raise ProtocolError(
            f"input {tensor.name!r} must be {declared.datatype}, got {tensor.datatype}"
        )
    if not declared.accepts_shape(tensor.shape):
        raise ProtocolError(
            f"input {tensor.name!r} has shape {list(tensor.shape)}; this model takes "
            f"{list(declared.shape)} (-1: any size)"
        )


def check_requested_outputs(request: InferRequest, available: Collection[str]) -> None:
    """Refuse, before any work, a request for an output the model will not produce."""
    for output in request.outputs or ():
        if output.name not in available:
            raise ProtocolError(
                f"unknown output {output.name!r}; this model's outputs: {', '.join(available)}"
            )


# -- encoding a response --------------------------------------------------------------------


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: Sequence[OutputTensor],
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (send it as
    `Inference-Header-Content-Length`; None: the body is all JSON).

    Outputs come in the order the request asked for them (all of `outputs` when it asked for
    none), each binary or JSON as its own `binary_data` or else `binary_data_output` says.
    """
    by_name = {output.name: output for output in outputs}
    wanted = request.outputs or [RequestedOutput(output.name) for output in outputs]
    check_requested_outputs(request, by_name)
    default_binary = request.binary_data_output
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for asked in wanted:
        tensor = by_name[asked.name]
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if default_binary if asked.binary is None else asked.binary:
            chunk = _to_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = _to_json_data(tensor)
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _to_binary(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        assert isinstance(tensor.data, list)
        return b"".join(_LENGTH.pack(len(item)) + item for item in tensor.data)
    assert isinstance(tensor.data, np.ndarray)
    dtype = DATATYPES[tensor.datatype]
    return np.ascontiguousarray(tensor.data, dtype=dtype).tobytes()


def _to_json_data(tensor: OutputTensor) -> Any:
    """A flat row-major list (numpy arrays go to orjson as they are; it writes them fast)."""
    if tensor.datatype == "BYTES":
        assert isinstance(tensor.data, list)
        try:
            return [item.decode() for item in tensor.data]
        except UnicodeDecodeError:
            raise ProtocolError(
                f"output {tensor.name!r} holds bytes that are not UTF-8; ask for it with "
                "binary_data true"
            ) from None
    assert isinstance(tensor.data, np.ndarray)
    return np.ascontiguousarray(tensor.data).reshape(-1)


# -- metadata documents -----------------------------------------------------------------------


def server_metadata(name: str, version: str, extensions: Sequence[str]) -> dict[str, Any]:
    """`GET /v2`: who the server is and which protocol extensions it speaks."""
    return {"name": name, "version": version, "extensions": list(extensions)}


def model_metadata(
    name: str,
    versions: Sequence[str],
    inputs: Sequence[TensorMetadata],
    outputs: Sequence[TensorMetadata],
    platform: str = PLATFORM,
) -> dict[str, Any]:
    """`GET /v2/models/{name}[/versions/{v}]`: the tensors a client may send and ask for."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [tensor.as_dict() for tensor in inputs],
        "outputs": [tensor.as_dict() for tensor in outputs],
    }


def model_ready(name: str, version: str | None, ready: bool) -> dict[str, Any]:
    """`GET /v2/models/{name}/ready`'s body (the status code, 200 or 400, is the answer)."""
    body: dict[str, Any] = {"name": name, "ready": ready}
    if version is not None:
        body["version"] = version
    return body
