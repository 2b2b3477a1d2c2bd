"""The Open Inference Protocol wire format (app/http/oip.py) against tritonclient's own code.

Request bodies are built by `InferenceServerClient.generate_request_body`, the function Triton's
HTTP client sends; responses are read back by `InferenceServerClient.parse_response_body`, the
function it reads them with. So these tests pin what the clients actually send and accept, not
our reading of the spec.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.http.oip import (
    DATATYPES,
    InferRequest,
    OutputTensor,
    ProtocolError,
    TensorMetadata,
    check_requested_outputs,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
    server_metadata,
)

Client = triton.InferenceServerClient
NUMERIC = [name for name, dtype in DATATYPES.items() if dtype is not None]


def body_of(
    inputs: list[triton.InferInput],
    outputs: list[triton.InferRequestedOutput] | None = None,
    **kwargs: Any,
) -> tuple[bytes, int | None]:
    """What tritonclient would POST: the body and its Inference-Header-Content-Length."""
    return Client.generate_request_body(inputs, outputs=outputs, **kwargs)


def tensor_input(
    name: str, array: np.ndarray, datatype: str, binary: bool = True
) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def texts_input(name: str, texts: list[str | bytes], binary: bool) -> triton.InferInput:
    return tensor_input(name, np.array(texts, dtype=np.object_), "BYTES", binary)


def read_response(body: bytes, header_length: int | None) -> triton.InferResult:
    return Client.parse_response_body(body, header_length=header_length)


def parse_error(body: bytes, header_length: Any = None, **kwargs: Any) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_infer_request(body, header_length, **kwargs)
    assert caught.value.status_code == 400
    return caught.value.message


# -- requests as tritonclient sends them ------------------------------------------------------


def test_binary_fp32_tensor_round_trips_with_id_outputs_and_parameters() -> None:
    images = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    body, header_length = body_of(
        [tensor_input("image", images, "FP32")],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)],
        request_id="req-7",
        parameters={"tenant": "a"},
    )
    assert header_length is not None  # tritonclient sends binary data by default

    request = parse_infer_request(body, str(header_length))

    (image,) = request.inputs
    assert (image.name, image.datatype, image.shape) == ("image", "FP32", (2, 1, 28, 28))
    assert isinstance(image.data, np.ndarray) and image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data, images)
    assert request.id == "req-7"
    assert request.parameters == {"tenant": "a"}
    assert request.outputs is not None
    assert [(o.name, o.binary) for o in request.outputs] == [("probabilities", False)]


@pytest.mark.parametrize("datatype", NUMERIC)
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_numeric_datatype_round_trips(datatype: str, binary: bool) -> None:
    dtype = DATATYPES[datatype]
    assert dtype is not None
    if datatype == "BOOL":
        values = np.array([[True, False, True], [False, False, True]])
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.array([[info.min, 0, 1], [info.max, 7, info.max - 1]], dtype=dtype)
    else:
        values = np.array([[0.5, -0.0, 1e-3], [3.25, -7.5, 1024]], dtype=dtype)

    body, header_length = body_of([tensor_input("x", values, datatype, binary)])
    (tensor,) = parse_infer_request(body, header_length).inputs

    assert isinstance(tensor.data, np.ndarray)
    assert tensor.data.dtype == values.dtype and tensor.data.shape == values.shape
    assert tensor.data.tobytes() == values.tobytes()


def test_bytes_texts_arrive_as_utf8_whether_binary_or_json() -> None:
    texts = ["a fine film", "", "déjà vu — 映画", "x" * 1000]
    for binary in (True, False):
        body, header_length = body_of([texts_input("input", list(texts), binary)])
        (tensor,) = parse_infer_request(body, header_length).inputs
        assert (tensor.datatype, tensor.shape) == ("BYTES", (4,))
        assert tensor.data == [text.encode() for text in texts]


def test_bytes_files_keep_every_byte() -> None:
    files = [b"\x89PNG\r\n\x1a\n\x00\x00", b"", bytes(range(256)) * 3]
    body, header_length = body_of([texts_input("input", list(files), binary=True)])
    (tensor,) = parse_infer_request(body, header_length).inputs
    assert tensor.data == files


def test_mixed_binary_and_json_inputs_take_their_own_bytes() -> None:
    first = np.arange(6, dtype=np.int64).reshape(2, 3)
    second = np.array([1.5, 2.5], dtype=np.float32)
    third = np.array([9, 8, 7, 6], dtype=np.uint8)
    body, header_length = body_of(
        [
            tensor_input("a", first, "INT64"),
            tensor_input("b", second, "FP32", binary=False),
            tensor_input("c", third, "UINT8"),
        ]
    )
    a, b, c = parse_infer_request(body, header_length).inputs
    np.testing.assert_array_equal(a.data, first)
    np.testing.assert_array_equal(b.data, second)
    np.testing.assert_array_equal(c.data, third)


def test_nested_json_data_is_read_row_major() -> None:
    header = {
        "inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]
    }
    (tensor,) = parse_infer_request(orjson.dumps(header)).inputs
    np.testing.assert_array_equal(tensor.data, [[1, 2], [3, 4]])


def test_declared_inputs_accept_dynamic_dimensions() -> None:
    declared = {"image": TensorMetadata("image", "FP32", (-1, 1, 28, 28))}
    images = np.zeros((5, 1, 28, 28), dtype=np.float32)
    body, header_length = body_of([tensor_input("image", images, "FP32")])
    (tensor,) = parse_infer_request(body, header_length, inputs=declared).inputs
    assert tensor.shape == (5, 1, 28, 28)


# -- requests that break the protocol: one error type, a message that says what ---------------


def json_body(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **fields})


FP32_2 = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"inputs": [', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", "has no `inputs`"),
        (json_body(), "`inputs` is empty"),
        (json_body({"datatype": "FP32", "shape": [1], "data": [1]}), "has no `name`"),
        (json_body({"name": "x", "shape": [1], "data": [1]}), "has no `datatype`"),
        (json_body({"name": "x", "datatype": "FP32", "data": [1]}), "has no `shape`"),
        (json_body({"name": "x", "datatype": "FP32", "shape": [1]}), "neither `data`"),
        (json_body({**FP32_2, "datatype": "BF16"}), "unknown datatype 'BF16'"),
        (json_body({**FP32_2, "datatype": "FLOAT"}), "unknown datatype 'FLOAT'"),
        (json_body({**FP32_2, "shape": [3]}), "has 2 elements but shape [3] holds 3"),
        (json_body({**FP32_2, "shape": [2, -1]}), "non-negative integers"),
        (json_body({**FP32_2, "data": [1.0, "2"]}), "must be numbers"),
        (json_body({**FP32_2, "datatype": "INT8", "data": [1, 300]}), "out of the range"),
        (json_body({**FP32_2, "datatype": "INT32", "data": [1, 2.5]}), "must be integers"),
        (json_body({**FP32_2, "datatype": "BOOL", "data": [1, 0]}), "true or false"),
        (json_body({**FP32_2, "datatype": "BYTES", "data": ["a", 2]}), "must be strings"),
        (json_body(FP32_2, FP32_2), "given twice"),
        (json_body(FP32_2, id=7), "`id` must be a string"),
        (
            json_body(FP32_2, outputs=[{"name": "y", "parameters": {"binary_data": 1}}]),
            "true or false",
        ),
        (
            json_body(FP32_2, outputs=[{"name": "y", "parameters": {"classification": 3}}]),
            "classification",
        ),
        (json_body({**FP32_2, "parameters": {"shared_memory_region": "r"}}), "shared memory"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(body: bytes, says: str) -> None:
    assert says in parse_error(body)


def binary_fp32_body() -> tuple[bytes, int]:
    body, header_length = body_of([tensor_input("x", np.ones((2, 3), dtype=np.float32), "FP32")])
    assert header_length is not None
    return body, header_length


def test_a_header_length_that_lies_is_refused() -> None:
    body, header_length = binary_fp32_body()
    assert "the body is" in parse_error(body, len(body) + 1)
    assert "must be an integer" in parse_error(body, "twelve")
    assert "the body is" in parse_error(body, 0)
    assert "not valid JSON" in parse_error(body, header_length - 1)
    assert "not valid JSON" in parse_error(body, header_length + 1)
    # No header at all: the binary tail is read as JSON.
    assert "not valid JSON" in parse_error(body, None)


def test_binary_sizes_that_do_not_add_up_are_refused() -> None:
    body, header_length = binary_fp32_body()
    assert "add up to 24" in parse_error(body + b"\x00", header_length)
    assert "only 23 bytes" in parse_error(body[:-1], header_length)

    header = orjson.loads(body[:header_length])
    header["inputs"][0]["parameters"]["binary_data_size"] = 20
    tail = body[header_length:][:20]
    lying = orjson.dumps(header)
    assert "is 24 bytes but binary_data_size is 20" in parse_error(lying + tail, len(lying))


def test_truncated_bytes_elements_are_refused() -> None:
    element = struct.pack("<I", 10) + b"short"
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(element)},
                }
            ]
        }
    )
    assert "runs past the end" in parse_error(header + element, len(header))
    header = header.replace(b'"binary_data_size":9', b'"binary_data_size":2')
    assert "4-byte length" in parse_error(header + element[:2], len(header))


def test_inputs_the_model_does_not_declare_are_refused() -> None:
    declared = {"image": TensorMetadata("image", "FP32", (-1, 1, 28, 28))}
    body, length = body_of([tensor_input("pixels", np.zeros((1, 1, 28, 28), np.float32), "FP32")])
    assert "unknown input 'pixels'" in parse_error(body, length, inputs=declared)

    body, length = body_of([tensor_input("image", np.zeros((1, 1, 28, 28)), "FP64")])
    assert "must be FP32, got FP64" in parse_error(body, length, inputs=declared)

    body, length = body_of([tensor_input("image", np.zeros((1, 28, 28), np.float32), "FP32")])
    assert "has shape [1, 28, 28]" in parse_error(body, length, inputs=declared)


def test_unknown_requested_outputs_are_refused() -> None:
    body, length = body_of(
        [tensor_input("x", np.ones(2, np.float32), "FP32")],
        outputs=[triton.InferRequestedOutput("label"), triton.InferRequestedOutput("logits")],
    )
    request = parse_infer_request(body, length)
    check_requested_outputs(request, ["label", "logits"])
    with pytest.raises(ProtocolError, match="unknown output 'logits'"):
        check_requested_outputs(request, ["label", "probability"])
    with pytest.raises(ProtocolError, match="unknown output 'logits'"):
        encode_infer_response("m", "1", request, [OutputTensor.from_texts("label", ["a", "b"])])


# -- responses as tritonclient reads them ------------------------------------------------------


def outputs_for_a_batch_of_two() -> list[OutputTensor]:
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7]], dtype=np.float32)
    return [
        OutputTensor.from_texts("label", ["negative", "positive"]),
        OutputTensor.from_array("probability", probabilities.max(axis=1)),
        OutputTensor.from_array("abstain", np.array([False, True])),
        OutputTensor.from_array("probabilities", probabilities),
    ]


def request_asking(
    outputs: list[triton.InferRequestedOutput] | None, **kwargs: Any
) -> InferRequest:
    body, length = body_of(
        [texts_input("input", ["good", "bad"], binary=True)], outputs=outputs, **kwargs
    )
    return parse_infer_request(body, length)


def test_response_decodes_in_tritonclient_with_outputs_in_the_order_asked() -> None:
    request = request_asking(
        [
            triton.InferRequestedOutput("probabilities", binary_data=True),
            triton.InferRequestedOutput("label", binary_data=False),
            triton.InferRequestedOutput("abstain", binary_data=True),
        ],
        request_id="r1",
    )
    body, header_length = encode_infer_response(
        "imdb", "1.0.0", request, outputs_for_a_batch_of_two()
    )
    result = read_response(body, header_length)

    document = result.get_response()
    assert [o["name"] for o in document["outputs"]] == ["probabilities", "label", "abstain"]
    assert (document["model_name"], document["model_version"], document["id"]) == (
        "imdb",
        "1.0.0",
        "r1",
    )
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), np.array([[0.9, 0.1], [0.3, 0.7]], dtype=np.float32)
    )
    assert result.as_numpy("label").tolist() == ["negative", "positive"]  # JSON: str elements
    assert result.as_numpy("abstain").tolist() == [False, True]
    assert result.as_numpy("probability") is None  # not asked for


def test_no_outputs_asked_means_all_binary_as_tritonclient_defaults() -> None:
    request = request_asking(None)
    assert request.binary_data_output  # generate_request_body sets it when no outputs are given
    body, header_length = encode_infer_response(
        "imdb", "1.0.0", request, outputs_for_a_batch_of_two()
    )
    result = read_response(body, header_length)
    assert header_length is not None
    assert [o["name"] for o in result.get_response()["outputs"]] == [
        "label",
        "probability",
        "abstain",
        "probabilities",
    ]
    assert all("data" not in o for o in result.get_response()["outputs"])
    assert result.as_numpy("label").tolist() == [b"negative", b"positive"]
    np.testing.assert_array_equal(result.as_numpy("probability"), np.float32([0.9, 0.7]))


def test_all_json_response_has_no_header_length() -> None:
    request = request_asking([triton.InferRequestedOutput("probability", binary_data=False)])
    body, header_length = encode_infer_response(
        "imdb", "1.0.0", request, outputs_for_a_batch_of_two()
    )
    assert header_length is None
    assert orjson.loads(body)["outputs"] == [
        {"name": "probability", "datatype": "FP32", "shape": [2], "data": [0.9, 0.7]}
    ]


def test_metadata_documents() -> None:
    assert server_metadata("small-model-server", "0.1.0", ["binary_tensor_data"]) == {
        "name": "small-model-server",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    metadata = model_metadata(
        "mnist",
        ["1.0.0"],
        [TensorMetadata("input", "BYTES", (-1,)), TensorMetadata("image", "FP32", (-1, 1, 28, 28))],
        [TensorMetadata("probabilities", "FP32", (-1, 10))],
    )
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"][1] == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}


# -- properties over random tensors ------------------------------------------------------------

SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, binary: bool) -> tuple[str, np.ndarray]:
    """A random tensor of a random datatype, with values JSON can carry when not `binary`."""
    datatype = draw(st.sampled_from(list(DATATYPES)))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        element = st.binary(max_size=12) if binary else st.text(max_size=12)
        items = draw(st.lists(element, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        array = np.empty(len(items), dtype=np.object_)
        array[:] = items
        return datatype, array.reshape(shape)
    dtype = DATATYPES[datatype]
    assert dtype is not None
    elements = None
    if dtype.kind == "f":
        elements = st.floats(width=dtype.itemsize * 8, allow_nan=binary, allow_infinity=binary)
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def same_tensor(got: Any, sent: np.ndarray, datatype: str) -> bool:
    if datatype == "BYTES":
        flat = [x if isinstance(x, bytes) else x.encode() for x in sent.reshape(-1).tolist()]
        return got == flat
    return got.dtype == sent.dtype and got.shape == sent.shape and got.tobytes() == sent.tobytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_tensor_tritonclient_sends_round_trips(data: st.DataObject) -> None:
    modes = data.draw(st.lists(st.booleans(), min_size=1, max_size=3))
    sent = [data.draw(tensors(binary)) for binary in modes]
    inputs = [
        tensor_input(f"in{i}", array, datatype, binary)
        for i, ((datatype, array), binary) in enumerate(zip(sent, modes, strict=True))
    ]
    body, header_length = body_of(inputs)

    parsed = parse_infer_request(body, header_length).inputs

    for tensor, (datatype, array) in zip(parsed, sent, strict=True):
        assert tensor.datatype == datatype and tensor.shape == array.shape
        assert same_tensor(tensor.data, array, datatype)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_output_tensor_decodes_in_tritonclient(data: st.DataObject) -> None:
    produced, asked = [], []
    for i in range(data.draw(st.integers(1, 3))):
        binary = data.draw(st.booleans())
        datatype, array = data.draw(tensors(binary=binary))
        if datatype == "BYTES":
            items = [x if isinstance(x, bytes) else x.encode() for x in array.reshape(-1).tolist()]
            produced.append(OutputTensor(f"out{i}", "BYTES", array.shape, items))
        else:
            produced.append(OutputTensor.from_array(f"out{i}", array))
        asked.append(triton.InferRequestedOutput(f"out{i}", binary_data=binary))
    request = parse_infer_request(*body_of([texts_input("input", ["x"], True)], outputs=asked))

    result = read_response(*encode_infer_response("m", "1", request, produced))

    for tensor, requested in zip(produced, asked, strict=True):
        got = result.as_numpy(tensor.name)
        assert got.shape == tensor.shape
        if tensor.datatype != "BYTES":
            assert got.tobytes() == np.asarray(tensor.data).tobytes()
        elif requested._binary:
            assert got.reshape(-1).tolist() == tensor.data
        else:
            assert [x.encode() for x in got.reshape(-1).tolist()] == tensor.data


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson can write
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["name", "datatype", "shape", "data", "parameters", "binary_data_size"]


def _corrupt_header(data: st.DataObject, header: dict[str, Any]) -> None:
    """Replace or delete one field somewhere in the JSON header."""
    where = data.draw(st.sampled_from(["request", "input", "output"]))
    value = data.draw(JSON_VALUES)
    if where == "request":
        key = data.draw(st.sampled_from(["inputs", "outputs", "id", "parameters"]))
        target = header
    elif where == "input" or not header.get("outputs"):
        target = data.draw(st.sampled_from(header["inputs"]))
        key = data.draw(st.sampled_from(FIELDS))
        if key == "binary_data_size":
            target = target.setdefault("parameters", {})
    else:
        target = data.draw(st.sampled_from(header["outputs"]))
        key = data.draw(st.sampled_from(["name", "parameters", "binary_data"]))
    if data.draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_bodies_raise_nothing_but_protocol_error(data: st.DataObject) -> None:
    modes = data.draw(st.lists(st.booleans(), min_size=1, max_size=2))
    sent = [data.draw(tensors(binary)) for binary in modes]
    inputs = [
        tensor_input(f"in{i}", array, datatype, binary)
        for i, ((datatype, array), binary) in enumerate(zip(sent, modes, strict=True))
    ]
    body, header_length = body_of(inputs, outputs=[triton.InferRequestedOutput("out")])
    json_size = header_length or len(body)
    header, tail = orjson.loads(body[:json_size]), body[json_size:]

    corruption = data.draw(st.sampled_from(["field", "truncate", "flip", "append", "length"]))
    if corruption == "field":
        _corrupt_header(data, header)
        head = orjson.dumps(header)
        body, header_length = head + tail, len(head) if tail else None
    elif corruption == "truncate":
        body = body[: data.draw(st.integers(0, max(0, len(body) - 1)))]
    elif corruption == "flip":
        assume(body)
        position = data.draw(st.integers(0, len(body) - 1))
        body = (
            body[:position]
            + bytes([body[position] ^ data.draw(st.integers(1, 255))])
            + body[position + 1 :]
        )
    elif corruption == "append":
        body = body + data.draw(st.binary(min_size=1, max_size=8))
    else:
        header_length = data.draw(st.none() | st.integers(-5, len(body) + 5) | st.text(max_size=5))
    declared = None
    if data.draw(st.booleans()):
        declared = {
            f"in{i}": TensorMetadata(f"in{i}", datatype, tuple(-1 for _ in array.shape))
            for i, (datatype, array) in enumerate(sent)
        }

    try:
        request = parse_infer_request(body, header_length, inputs=declared)
    except ProtocolError as exc:
        assert exc.message
    else:
        assert isinstance(request, InferRequest)
