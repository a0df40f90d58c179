"""native.send_frames (sendmmsg in chunks, write() where the descriptor is not a socket) and its twin:
every frame out, in order, counted; failures counted, never raised."""

from __future__ import annotations

import os
import socket

import pytest

from pylvs import native
from pylvs._pure import io as pure_io

IMPLS = [pure_io.send_frames] + ([native.send_frames] if native.available() else [])
IDS = ["pure", "native"][: len(IMPLS)]
pytestmark = pytest.mark.once  # both implementations are named here; the suite's own split would repeat them
FRAMES = [bytes([i]) * (1 + i * 13 % 300) for i in range(150)]  # more than one sendmmsg chunk of 64


@pytest.mark.parametrize("send_frames", IMPLS, ids=IDS)
def test_datagrams_go_out_in_order(send_frames):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        b.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sent, nbytes, errors = send_frames(a.fileno(), [bytearray(f) for f in FRAMES[:40]] + FRAMES[40:])
        got = []
        while True:
            try:
                got.append(b.recv(4096))
            except BlockingIOError:
                break
    # 150 frames (more than one sendmmsg chunk of 64), about 22 KB: the 1 MB queue takes them all.
    assert (sent, errors) == (len(FRAMES), 0) and got == FRAMES
    assert nbytes == sum(len(f) for f in FRAMES[:sent])


@pytest.mark.parametrize("send_frames", IMPLS, ids=IDS)
def test_not_a_socket_falls_back_to_write(send_frames):
    r, w = os.pipe()
    try:
        sent, nbytes, errors = send_frames(w, FRAMES[:20])
        assert (sent, errors) == (20, 0) and nbytes == sum(len(f) for f in FRAMES[:20])
        assert os.read(r, 1 << 20) == b"".join(FRAMES[:20])
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("send_frames", IMPLS, ids=IDS)
def test_a_closed_descriptor_is_counted_not_raised(send_frames):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert send_frames(w, FRAMES[:3]) == (0, 0, 3)
