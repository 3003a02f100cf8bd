# python -m pytest tests/qc2c/latent/test_codec.py -q
from __future__ import annotations

import pytest
import torch

from qc2c.kv.wire import WireError
from qc2c.latent.codec import WIRE_SCHEMES, WireMessage, encode_wire, through_wire, wire_scheme


@pytest.mark.parametrize("setting", sorted(WIRE_SCHEMES))
@pytest.mark.parametrize("group_size", [None, 8])
def test_wire_round_trips_through_bytes(setting, group_size):
    wire = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(1))
    scheme = wire_scheme(setting, group_size)
    for msg in encode_wire(wire, scheme):
        data = msg.to_bytes()
        assert len(data) == msg.nbytes == sum(msg.breakdown().values())
        back = WireMessage.from_bytes(data)
        assert back.to_bytes() == data
        torch.testing.assert_close(back.decode(), msg.decode())
    decoded, _ = through_wire(wire, scheme)
    err = float((decoded - wire).abs().max())
    span = float(wire.max() - wire.min())
    bound = {"latent": 1e-2, "latent_int8": span / 255, "latent_int4": span / 15}[setting]
    assert err <= bound


def test_fewer_bits_fewer_bytes_and_more_error():
    wire = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(2))
    sizes, errors = [], []
    for setting in ("latent", "latent_int8", "latent_int4"):
        decoded, msgs = through_wire(wire, wire_scheme(setting))
        sizes.append(msgs[0].nbytes)
        errors.append(float((decoded - wire).pow(2).mean()))
    assert sizes[0] > sizes[1] > sizes[2]
    assert errors[0] < errors[1] < errors[2]


def test_a_rows_bytes_do_not_depend_on_its_batch():
    wire = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(3))
    scheme = wire_scheme("latent_int4")
    assert encode_wire(wire, scheme)[2].to_bytes() == encode_wire(wire[2:3], scheme)[0].to_bytes()


def test_malformed_bytes_are_refused():
    msg = encode_wire(torch.randn(1, 4, 8), wire_scheme("latent_int8"))[0]
    data = msg.to_bytes()
    with pytest.raises(WireError, match="magic"):
        WireMessage.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(WireError, match="truncated"):
        WireMessage.from_bytes(data[:-3])
    with pytest.raises(WireError, match="trailing"):
        WireMessage.from_bytes(data + b"\0")
