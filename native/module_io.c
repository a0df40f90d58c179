/* pylvs._native, part two: the batched I/O (io.c) and offload (offload.c) functions as Python sees them.
 * Twins: pylvs/_pure/io.py and pylvs/_pure/offload.py.  module.c adds these to the module. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sys/uio.h>
#include "pylvs_native.h"

#define RX_NCOUNTERS (sizeof(pn_rx_counters) / sizeof(uint64_t))
#define TX_NCOUNTERS (sizeof(pn_tx_counters) / sizeof(uint64_t))

typedef int (*rx_fn)(int, uint8_t *, size_t, pn_desc *, uint32_t, uint32_t, uint32_t, uint32_t, int, pn_rx_counters *);

static PyObject *rx_common(PyObject *args, rx_fn rx)
{
    int fd, vnet;
    Py_buffer buf, desc, ctr;
    unsigned int max, stride, headroom, room;
    if (!PyArg_ParseTuple(args, "iw*w*IIIIpw*", &fd, &buf, &desc, &max, &stride, &headroom, &room, &vnet, &ctr))
        return NULL;
    PyObject *r = NULL;
    if ((size_t)desc.len / sizeof(pn_desc) < (max < 64 ? max : 64) || (uintptr_t)desc.buf % _Alignof(pn_desc))
        PyErr_SetString(PyExc_ValueError, "desc too small or misaligned");
    else if ((size_t)ctr.len < sizeof(pn_rx_counters) || (uintptr_t)ctr.buf % _Alignof(uint64_t))
        PyErr_Format(PyExc_ValueError, "counters must be %d aligned uint64", (int)RX_NCOUNTERS);
    else if (stride == 0 || (uint64_t)headroom + room > stride)
        PyErr_SetString(PyExc_ValueError, "headroom + room must fit in stride");
    else {
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = rx(fd, buf.buf, (size_t)buf.len, desc.buf, max, stride, headroom, room, vnet, ctr.buf);
        Py_END_ALLOW_THREADS
        r = PyLong_FromLong(n);
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&desc);
    PyBuffer_Release(&ctr);
    return r;
}

static PyObject *py_rx_afpacket(PyObject *self, PyObject *args) { return rx_common(args, pn_rx_afpacket); }
static PyObject *py_rx_tap(PyObject *self, PyObject *args) { return rx_common(args, pn_rx_tap); }

static PyObject *py_tx_run(PyObject *self, PyObject *args)
{
    Py_buffer fds, vnet, buf, desc, ctr;
    unsigned int start, n;
    if (!PyArg_ParseTuple(args, "y*y*y*y*IIw*", &fds, &vnet, &buf, &desc, &start, &n, &ctr))
        return NULL;
    PyObject *r = NULL;
    size_t nfds = (size_t)fds.len / sizeof(int);
    if ((size_t)desc.len / sizeof(pn_desc) < n || start > n || (uintptr_t)desc.buf % _Alignof(pn_desc) ||
        (uintptr_t)fds.buf % _Alignof(int))
        PyErr_SetString(PyExc_ValueError, "desc holds fewer than n descriptors, or a buffer is misaligned");
    else if ((size_t)vnet.len < nfds)
        PyErr_SetString(PyExc_ValueError, "vnet needs one byte per fd");
    else if (nfds == 0 || (size_t)ctr.len < nfds * sizeof(pn_tx_counters) || (uintptr_t)ctr.buf % _Alignof(uint64_t))
        PyErr_Format(PyExc_ValueError, "counters must be %d aligned uint64 per fd", (int)TX_NCOUNTERS);
    else {
        uint32_t next;
        Py_BEGIN_ALLOW_THREADS
        next = pn_tx_run(fds.buf, vnet.buf, (uint32_t)nfds, buf.buf, (size_t)buf.len, desc.buf, start, n, ctr.buf);
        Py_END_ALLOW_THREADS
        r = PyLong_FromUnsignedLong(next);
    }
    PyBuffer_Release(&fds);
    PyBuffer_Release(&vnet);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&desc);
    PyBuffer_Release(&ctr);
    return r;
}

static PyObject *py_send_frames(PyObject *self, PyObject *args)
{
    int fd, vnet = 0;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "iO|p", &fd, &seq, &vnet))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "frames must be a sequence of buffers");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > (Py_ssize_t)UINT32_MAX) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "too many frames");
        return NULL;
    }
    Py_buffer *views = PyMem_Calloc((size_t)n + 1, sizeof(Py_buffer));
    struct iovec *iov = PyMem_Calloc((size_t)n + 1, sizeof(struct iovec));
    Py_ssize_t got = 0;
    PyObject *r = NULL;
    if (!views || !iov) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
        iov[got].iov_base = views[got].buf;
        iov[got].iov_len = (size_t)views[got].len;
    }
    uint64_t bytes;
    uint32_t errors, sent;
    Py_BEGIN_ALLOW_THREADS
    sent = pn_send_frames(fd, iov, (uint32_t)n, vnet, &bytes, &errors);
    Py_END_ALLOW_THREADS
    r = Py_BuildValue("(IKI)", sent, (unsigned long long)bytes, errors);
done:
    for (Py_ssize_t k = 0; k < got; k++)
        PyBuffer_Release(&views[k]);
    PyMem_Free(views);
    PyMem_Free(iov);
    Py_DECREF(fast);
    return r;
}

/* vnet_to_desc(hdr10, frame) -> (flags, gso_type, gso_size) or None (refused); may finish frame's checksum. */
static PyObject *py_vnet_to_desc(PyObject *self, PyObject *args)
{
    Py_buffer h, f;
    if (!PyArg_ParseTuple(args, "y*w*", &h, &f))
        return NULL;
    PyObject *r = NULL;
    if (h.len != PN_VNET_HDR_LEN) {
        PyErr_SetString(PyExc_ValueError, "a virtio-net header is 10 bytes");
    } else {
        const uint8_t *b = h.buf;
        pn_vnet_hdr v = {.flags = b[0], .gso_type = b[1]};
        memcpy(&v.hdr_len, b + 2, 2);
        memcpy(&v.gso_size, b + 4, 2);
        memcpy(&v.csum_start, b + 6, 2);
        memcpy(&v.csum_offset, b + 8, 2);
        pn_desc d = {0};
        if (pn_vnet_to_desc(&v, f.buf, (size_t)f.len, &d) < 0) {
            r = Py_NewRef(Py_None);
        } else {
            r = Py_BuildValue("(iii)", d.flags, d.gso_type, d.gso_size);
        }
    }
    PyBuffer_Release(&h);
    PyBuffer_Release(&f);
    return r;
}

/* desc_to_vnet(flags, gso_type, gso_size, frame) -> the 10-byte header to send frame with. */
static PyObject *py_desc_to_vnet(PyObject *self, PyObject *args)
{
    unsigned char flags, gso_type;
    unsigned short gso_size;
    Py_buffer f;
    if (!PyArg_ParseTuple(args, "bbHy*", &flags, &gso_type, &gso_size, &f))
        return NULL;
    pn_desc d = {.flags = flags, .gso_type = gso_type, .gso_size = gso_size};
    pn_vnet_hdr v;
    pn_desc_to_vnet(&d, f.buf, (size_t)f.len, &v);
    PyBuffer_Release(&f);
    uint8_t b[PN_VNET_HDR_LEN] = {v.flags, v.gso_type};
    memcpy(b + 2, &v.hdr_len, 2);
    memcpy(b + 4, &v.gso_size, 2);
    memcpy(b + 6, &v.csum_start, 2);
    memcpy(b + 8, &v.csum_offset, 2);
    return PyBytes_FromStringAndSize((const char *)b, PN_VNET_HDR_LEN);
}

/* gso_segment(frame, gso_type, gso_size) -> [bytearray, ...] or None (refused). */
static PyObject *py_gso_segment(PyObject *self, PyObject *args)
{
    Py_buffer f;
    unsigned char gso_type;
    unsigned short gso_size;
    if (!PyArg_ParseTuple(args, "y*bH", &f, &gso_type, &gso_size))
        return NULL;
    PyObject *r = NULL;
    pn_desc d = {.gso_type = gso_type, .gso_size = gso_size, .flags = PN_CSUM_PARTIAL};
    /* At most 64 KB of payload over at least 1 byte per segment; the headers repeat per segment. */
    uint32_t maxsegs = gso_size ? (uint32_t)(f.len / gso_size + 1) : 1;
    size_t outlen = (size_t)f.len + (size_t)maxsegs * 128;
    uint8_t *out = PyMem_Malloc(outlen);
    uint32_t *lens = PyMem_Malloc(maxsegs * sizeof(uint32_t));
    if (!out || !lens) {
        PyErr_NoMemory();
    } else {
        int n = pn_gso_segment(f.buf, (size_t)f.len, &d, out, outlen, lens, maxsegs);
        if (n < 0) {
            r = Py_NewRef(Py_None);
        } else if ((r = PyList_New(n))) {
            size_t at = 0;
            for (int i = 0; i < n; i++) {
                PyObject *b = PyByteArray_FromStringAndSize((const char *)out + at, lens[i]);
                if (!b) {
                    Py_CLEAR(r);
                    break;
                }
                PyList_SET_ITEM(r, i, b);
                at += lens[i];
            }
        }
    }
    PyMem_Free(out);
    PyMem_Free(lens);
    PyBuffer_Release(&f);
    return r;
}

PyMethodDef pn_io_methods[] = {
    {"rx_afpacket", py_rx_afpacket, METH_VARARGS,
     "rx_afpacket(fd, buf, desc, max, stride, headroom, room, vnet, counters) -> frames described in desc"},
    {"rx_tap", py_rx_tap, METH_VARARGS,
     "rx_tap(fd, buf, desc, max, stride, headroom, room, vnet, counters) -> frames described in desc (TAP)"},
    {"tx_run", py_tx_run, METH_VARARGS,
     "tx_run(fds, vnet, buf, desc, start, n, counters) -> index of the first punted frame (or n); the run is sent"},
    {"send_frames", py_send_frames, METH_VARARGS,
     "send_frames(fd, frames, vnet=False) -> (sent, bytes, errors): sendmmsg in chunks (writev() for a TAP)"},
    {"vnet_to_desc", py_vnet_to_desc, METH_VARARGS,
     "vnet_to_desc(hdr, frame) -> (flags, gso_type, gso_size), or None when the frame cannot be taken"},
    {"desc_to_vnet", py_desc_to_vnet, METH_VARARGS, "desc_to_vnet(flags, gso_type, gso_size, frame) -> 10 bytes"},
    {"gso_segment", py_gso_segment, METH_VARARGS,
     "gso_segment(frame, gso_type, gso_size) -> wire-sized frames with whole checksums, or None"},
    {NULL}};
