/* pylvs._native: the Python face of the C core (csum.c, flowtab.c, fastpath.c).
 * Each function here has a pure-Python twin of the same name and signature in pylvs/_pure/. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <sys/uio.h>
#include "pylvs_native.h"

extern PyMethodDef pn_io_methods[]; /* module_io.c */

/* ---------------------------------------------------------------- checksums */

static PyObject *py_csum_partial(PyObject *self, PyObject *args)
{
    Py_buffer b;
    unsigned long long initial = 0;
    if (!PyArg_ParseTuple(args, "y*|K", &b, &initial))
        return NULL;
    uint64_t s = pn_csum_partial(b.buf, (size_t)b.len, initial);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(s);
}

static PyObject *py_checksum(PyObject *self, PyObject *args)
{
    Py_buffer b;
    unsigned long long initial = 0;
    if (!PyArg_ParseTuple(args, "y*|K", &b, &initial))
        return NULL;
    uint16_t c = pn_csum_fold(pn_csum_partial(b.buf, (size_t)b.len, initial));
    PyBuffer_Release(&b);
    return PyLong_FromLong(c);
}

static PyObject *py_csum_fold(PyObject *self, PyObject *arg)
{
    unsigned long long s = PyLong_AsUnsignedLongLong(arg);
    if (s == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(pn_csum_fold(s));
}

static PyObject *py_pseudo_header_sum(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    unsigned int proto, length;
    if (!PyArg_ParseTuple(args, "y*y*II", &a, &b, &proto, &length))
        return NULL;
    uint64_t s = pn_csum_partial(a.buf, (size_t)a.len, 0) + pn_csum_partial(b.buf, (size_t)b.len, 0) + proto + length;
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(s);
}

static PyObject *py_csum_replace2(PyObject *self, PyObject *args)
{
    unsigned int c, o, n;
    if (!PyArg_ParseTuple(args, "III", &c, &o, &n))
        return NULL;
    return PyLong_FromLong(pn_csum_replace2((uint16_t)c, (uint16_t)o, (uint16_t)n));
}

static PyObject *py_csum_replace4(PyObject *self, PyObject *args)
{
    unsigned int c;
    unsigned long o, n;
    if (!PyArg_ParseTuple(args, "Ikk", &c, &o, &n))
        return NULL;
    return PyLong_FromLong(pn_csum_replace4((uint16_t)c, (uint32_t)o, (uint32_t)n));
}

static PyObject *py_csum_replace_bytes(PyObject *self, PyObject *args)
{
    unsigned int c;
    Py_buffer o, n;
    if (!PyArg_ParseTuple(args, "Iy*y*", &c, &o, &n))
        return NULL;
    PyObject *r = NULL;
    if (o.len != n.len || o.len % 2)
        PyErr_SetString(PyExc_ValueError, "old and new must have the same even length");
    else
        r = PyLong_FromLong(pn_csum_replace_bytes((uint16_t)c, o.buf, n.buf, (size_t)o.len));
    PyBuffer_Release(&o);
    PyBuffer_Release(&n);
    return r;
}

static PyObject *py_complete_checksum(PyObject *self, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_WRITABLE) < 0)
        return NULL;
    int r = pn_complete_l4_checksum(b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return PyBool_FromLong(r);
}

static PyObject *siphash_cd(PyObject *args, int c, int d)
{
    Py_buffer k, m;
    if (!PyArg_ParseTuple(args, "y*y*", &k, &m))
        return NULL;
    PyObject *r = NULL;
    if (k.len != 16)
        PyErr_SetString(PyExc_ValueError, "the key must be 16 bytes");
    else
        r = PyLong_FromUnsignedLongLong(pn_siphash(k.buf, m.buf, (size_t)m.len, c, d));
    PyBuffer_Release(&k);
    PyBuffer_Release(&m);
    return r;
}

static PyObject *py_siphash13(PyObject *self, PyObject *args) { return siphash_cd(args, 1, 3); }
static PyObject *py_siphash24(PyObject *self, PyObject *args) { return siphash_cd(args, 2, 4); }

/* ---------------------------------------------------------------- FlowTable */

static const char *PUNT_NAMES[PN_PUNT_NREASONS] = {
    "not_ipv4", "malformed", "ip_options", "fragment", "protocol", "no_flow", "not_fast",
    "expired", "tcp_flags", "ttl", "mtu", "toa", "headroom", "interface", "gso",
};

typedef struct {
    PyObject_HEAD
    pn_table t;
    int ready;
} FlowTable;

/* A FlowTable made without __init__ (FlowTable.__new__), or whose re-__init__ failed, has no arrays. */
#define READY(s)                                                                                           \
    do {                                                                                                   \
        if (!(s)->ready) {                                                                                 \
            PyErr_SetString(PyExc_RuntimeError, "FlowTable is not initialised");                          \
            return NULL;                                                                                   \
        }                                                                                                  \
    } while (0)

static int get_addr(PyObject *o, uint32_t *out)
{
    Py_buffer b;
    if (PyObject_GetBuffer(o, &b, PyBUF_SIMPLE) < 0)
        return -1;
    int ok = b.len == 4;
    if (ok)
        memcpy(out, b.buf, 4);
    PyBuffer_Release(&b);
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "an IPv4 address must be 4 bytes");
    return ok ? 0 : -1;
}

static int get_port(PyObject *o, uint16_t *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > 65535) {
        PyErr_SetString(PyExc_ValueError, "a port must be 0..65535");
        return -1;
    }
    *out = htons((uint16_t)v);
    return 0;
}

static int get_mac(PyObject *o, uint8_t *out)
{
    Py_buffer b;
    if (PyObject_GetBuffer(o, &b, PyBUF_SIMPLE) < 0)
        return -1;
    int ok = b.len == 6;
    if (ok)
        memcpy(out, b.buf, 6);
    PyBuffer_Release(&b);
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "a MAC address must be 6 bytes");
    return ok ? 0 : -1;
}

static int check_slot(FlowTable *s, Py_ssize_t slot)
{
    if (slot < 0 || (size_t)slot >= s->t.hw || !(s->t.e[slot].flags & PN_F_USED)) {
        PyErr_Format(PyExc_KeyError, "no flow in slot %zd", slot);
        return -1;
    }
    return 0;
}

static int FT_init(FlowTable *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"capacity", "key", "dests", NULL};
    long long capacity;
    PyObject *key = Py_None;
    long long dests = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "L|OL", kwlist, &capacity, &key, &dests))
        return -1;
    uint8_t k[16];
    if (key == Py_None) {
        PyObject *urandom = PyImport_ImportModule("os");
        if (!urandom)
            return -1;
        PyObject *r = PyObject_CallMethod(urandom, "urandom", "i", 16);
        Py_DECREF(urandom);
        if (!r)
            return -1;
        memcpy(k, PyBytes_AS_STRING(r), 16);
        Py_DECREF(r);
    } else {
        Py_buffer b;
        if (PyObject_GetBuffer(key, &b, PyBUF_SIMPLE) < 0)
            return -1;
        int ok = b.len == 16;
        if (ok)
            memcpy(k, b.buf, 16);
        PyBuffer_Release(&b);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "key must be 16 bytes");
            return -1;
        }
    }
    if (capacity < 1 || capacity > (1 << 30) || dests < 1 || dests > 65536) {
        PyErr_SetString(PyExc_ValueError, "capacity must be 1..2**30 and dests 1..65536");
        return -1;
    }
    if (s->ready)
        pn_table_free(&s->t);
    s->ready = 0;
    if (pn_table_init(&s->t, (uint32_t)capacity, k, (uint32_t)dests) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    s->ready = 1;
    return 0;
}

static void FT_dealloc(FlowTable *s)
{
    if (s->ready)
        pn_table_free(&s->t);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static Py_ssize_t FT_len(FlowTable *s) { return s->t.count; }

static PyObject *FT_capacity(FlowTable *s, void *c) { return PyLong_FromUnsignedLong(s->t.capacity); }
static PyObject *FT_key(FlowTable *s, void *c) { return PyBytes_FromStringAndSize((char *)s->t.key, 16); }

static PyObject *FT_memory_bytes(FlowTable *s, PyObject *unused)
{
    READY(s);
    return PyLong_FromSize_t(pn_table_memory(&s->t));
}

static PyObject *FT_set_interface(FlowTable *s, PyObject *args)
{
    READY(s);
    int index;
    PyObject *mac, *addr;
    long long mtu;
    int offload = 0;
    if (!PyArg_ParseTuple(args, "iOOL|p", &index, &mac, &addr, &mtu, &offload))
        return NULL;
    if (index < 0 || index >= PN_MAX_IFACES) {
        PyErr_Format(PyExc_ValueError, "interface index must be 0..%d", PN_MAX_IFACES - 1);
        return NULL;
    }
    if (mtu < 1 || mtu > 65535) {
        PyErr_SetString(PyExc_ValueError, "mtu must be 1..65535");
        return NULL;
    }
    uint8_t m6[6];
    uint32_t a4;
    if (get_mac(mac, m6) < 0 || get_addr(addr, &a4) < 0)
        return NULL; /* nothing changed */
    pn_iface *i = &s->t.ifaces[index];
    memcpy(i->mac, m6, 6);
    i->addr = a4;
    i->mtu = (uint32_t)mtu;
    i->offload = (uint8_t)offload;
    i->used = 1;
    Py_RETURN_NONE;
}

static PyObject *FT_set_timeouts(FlowTable *s, PyObject *args)
{
    READY(s);
    double tcp, udp;
    if (!PyArg_ParseTuple(args, "dd", &tcp, &udp))
        return NULL;
    s->t.tcp_timeout = tcp;
    s->t.udp_timeout = udp;
    Py_RETURN_NONE;
}

static int parse_key(PyObject *args, uint8_t *proto, uint32_t *a, uint16_t *ap, uint32_t *b, uint16_t *bp)
{
    int pr;
    PyObject *oa, *oap, *ob, *obp;
    if (!PyArg_ParseTuple(args, "iOOOO", &pr, &oa, &oap, &ob, &obp))
        return -1;
    if (pr < 0 || pr > 255) {
        PyErr_SetString(PyExc_ValueError, "proto must be 0..255");
        return -1;
    }
    *proto = (uint8_t)pr;
    if (get_addr(oa, a) < 0 || get_port(oap, ap) < 0 || get_addr(ob, b) < 0 || get_port(obp, bp) < 0)
        return -1;
    return 0;
}

static PyObject *FT_hash(FlowTable *s, PyObject *args)
{
    READY(s);
    uint8_t proto;
    uint32_t a, b;
    uint16_t ap, bp;
    if (parse_key(args, &proto, &a, &ap, &b, &bp) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(pn_key_hash(&s->t, proto, a, ap, b, bp));
}

static PyObject *FT_lookup(FlowTable *s, PyObject *args)
{
    READY(s);
    uint8_t proto;
    uint32_t a, b;
    uint16_t ap, bp;
    if (parse_key(args, &proto, &a, &ap, &b, &bp) < 0)
        return NULL;
    return PyLong_FromLongLong(pn_lookup(&s->t, proto, a, ap, b, bp));
}

static PyObject *FT_insert(FlowTable *s, PyObject *args)
{
    READY(s);
    int proto, mode;
    PyObject *ca, *cp, *va, *vp, *la, *lp, *da, *dp;
    int has_out;
    double expires;
    if (!PyArg_ParseTuple(args, "iOOOOOOOOipd", &proto, &ca, &cp, &va, &vp, &la, &lp, &da, &dp, &mode, &has_out,
                          &expires))
        return NULL;
    if (proto < 0 || proto > 255) {
        PyErr_SetString(PyExc_ValueError, "proto must be 0..255");
        return NULL;
    }
    if (mode < 0 || mode > 3) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0..3 (nat, dr, tun, fullnat)");
        return NULL;
    }
    uint32_t caddr, vaddr, laddr, daddr;
    uint16_t cport, vport, lport, dport;
    if (get_addr(ca, &caddr) < 0 || get_port(cp, &cport) < 0 || get_addr(va, &vaddr) < 0 ||
        get_port(vp, &vport) < 0 || get_addr(la, &laddr) < 0 || get_port(lp, &lport) < 0 ||
        get_addr(da, &daddr) < 0 || get_port(dp, &dport) < 0)
        return NULL;
    int64_t r = pn_insert(&s->t, (uint8_t)proto, caddr, cport, vaddr, vport, laddr, lport, daddr, dport,
                          (uint8_t)mode, has_out, expires);
    if (r == -3) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0..3 (nat, dr, tun, fullnat)");
        return NULL;
    }
    return PyLong_FromLongLong(r);
}

static PyObject *FT_remove(FlowTable *s, PyObject *arg)
{
    READY(s);
    int overflow = 0;
    long long slot = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || slot < 0 || (unsigned long long)slot >= s->t.hw)
        Py_RETURN_FALSE;
    return PyBool_FromLong(pn_remove(&s->t, (uint32_t)slot));
}

static PyObject *mac_bytes(const uint8_t *m) { return PyBytes_FromStringAndSize((const char *)m, 6); }
static PyObject *addr_bytes(uint32_t a) { return PyBytes_FromStringAndSize((const char *)&a, 4); }

static PyObject *FT_get(FlowTable *s, PyObject *arg)
{
    READY(s);
    Py_ssize_t slot = PyLong_AsSsize_t(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (check_slot(s, slot) < 0)
        return NULL;
    pn_entry *e = &s->t.e[slot];
    return Py_BuildValue(
        "{sisNsisNsisNsisNsisisNsNsdsisisNsNsisisisisN}", "proto", e->proto, "caddr", addr_bytes(e->caddr), "cport",
        ntohs(e->cport), "vaddr", addr_bytes(e->vaddr), "vport", ntohs(e->vport), "laddr", addr_bytes(e->laddr),
        "lport", ntohs(e->lport), "daddr", addr_bytes(e->daddr), "dport", ntohs(e->dport), "mode", e->mode,
        "has_out", PyBool_FromLong(e->flags & PN_F_HAS_OUT), "fast", PyBool_FromLong(e->flags & PN_F_FAST), "expires", e->expires, "in_if",
        e->in_if, "out_if", e->out_if, "client_mac", mac_bytes(e->client_mac), "rs_mac", mac_bytes(e->rs_mac),
        "dest_id", e->dest_id, "toa_kind", e->toa_kind, "state", e->state, "in_table", e->in_table, "toa_due",
        PyBool_FromLong(e->flags & PN_F_TOA));
}

static PyObject *FT_set_fast(FlowTable *s, PyObject *args)
{
    READY(s);
    Py_ssize_t slot;
    int in_if, out_if, dest_id, toa_kind, state = PN_TCP_ES, in_table = 0, toa_due = 0;
    PyObject *cmac, *rmac;
    if (!PyArg_ParseTuple(args, "niOiOii|iip", &slot, &in_if, &cmac, &out_if, &rmac, &dest_id, &toa_kind, &state,
                          &in_table, &toa_due))
        return NULL;
    if (state < 0 || state >= PN_TCP_NSTATES || (in_table != 0 && in_table != 2)) {
        PyErr_SetString(PyExc_ValueError, "state must be 0..10 and in_table 0 or 2");
        return NULL;
    }
    if (check_slot(s, slot) < 0)
        return NULL;
    if (in_if < 0 || in_if >= PN_MAX_IFACES || out_if < 0 || out_if >= PN_MAX_IFACES || dest_id < 0 ||
        (uint32_t)dest_id >= s->t.ndests || toa_kind < 0 || toa_kind > 255) {
        PyErr_SetString(PyExc_ValueError, "interface, dest_id or toa_kind out of range");
        return NULL;
    }
    uint8_t cm[6], rm[6];
    if (get_mac(cmac, cm) < 0 || get_mac(rmac, rm) < 0)
        return NULL; /* nothing changed */
    pn_entry *e = &s->t.e[slot];
    memcpy(e->client_mac, cm, 6);
    memcpy(e->rs_mac, rm, 6);
    e->in_if = (uint8_t)in_if;
    e->out_if = (uint8_t)out_if;
    e->dest_id = (uint16_t)dest_id;
    e->toa_kind = (uint8_t)toa_kind;
    e->state = (uint8_t)state;
    e->in_table = (uint8_t)in_table;
    e->flags = (uint8_t)((e->flags & ~PN_F_TOA) | PN_F_FAST | (toa_due && toa_kind ? PN_F_TOA : 0));
    Py_RETURN_NONE;
}

/* set_tcp_states(next, timeouts): IPVS's TCP tables (3 x 4 x 11 bytes: [table][flag class][state] -> state)
 * and the timeout of each state; from then on the fast path moves fast flows' TCP states itself. */
static PyObject *FT_set_tcp_states(FlowTable *s, PyObject *args)
{
    READY(s);
    Py_buffer nx;
    PyObject *tos;
    if (!PyArg_ParseTuple(args, "y*O", &nx, &tos))
        return NULL;
    PyObject *r = NULL, *fast = NULL;
    double to[PN_TCP_NSTATES];
    if (nx.len != (Py_ssize_t)sizeof(s->t.tcp_next)) {
        PyErr_Format(PyExc_ValueError, "next must be %d bytes", (int)sizeof(s->t.tcp_next));
        goto done;
    }
    for (Py_ssize_t i = 0; i < nx.len; i++)
        if (((const uint8_t *)nx.buf)[i] >= PN_TCP_NSTATES) {
            PyErr_SetString(PyExc_ValueError, "a state in next is out of range");
            goto done;
        }
    fast = PySequence_Fast(tos, "timeouts must be a sequence of 11 numbers");
    if (!fast)
        goto done;
    if (PySequence_Fast_GET_SIZE(fast) != PN_TCP_NSTATES) {
        PyErr_SetString(PyExc_ValueError, "timeouts must be a sequence of 11 numbers");
        goto done;
    }
    for (int i = 0; i < PN_TCP_NSTATES; i++) {
        to[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (to[i] == -1.0 && PyErr_Occurred())
            goto done;
    }
    memcpy(s->t.tcp_next, nx.buf, sizeof(s->t.tcp_next));
    memcpy(s->t.tcp_to, to, sizeof(to));
    s->t.tcp_track = 1;
    r = Py_NewRef(Py_None);
done:
    Py_XDECREF(fast);
    PyBuffer_Release(&nx);
    return r;
}

/* drain_events() -> [slot << 8 | flags | new state, ...] since the last call, in order. */
static PyObject *FT_drain_events(FlowTable *s, PyObject *unused)
{
    READY(s);
    PyObject *l = PyList_New(s->t.nevents);
    if (!l)
        return NULL;
    for (uint32_t i = 0; i < s->t.nevents; i++) {
        PyObject *v = PyLong_FromUnsignedLong(s->t.events[i]);
        if (!v) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, v);
    }
    s->t.nevents = 0;
    return l;
}

static PyObject *FT_clear_fast(FlowTable *s, PyObject *arg)
{
    READY(s);
    Py_ssize_t slot = PyLong_AsSsize_t(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (check_slot(s, slot) < 0)
        return NULL;
    s->t.e[slot].flags &= (uint8_t)~PN_F_FAST;
    Py_RETURN_NONE;
}

static PyObject *FT_expires(FlowTable *s, PyObject *arg)
{
    READY(s);
    Py_ssize_t slot = PyLong_AsSsize_t(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (check_slot(s, slot) < 0)
        return NULL;
    return PyFloat_FromDouble(s->t.e[slot].expires);
}

static PyObject *FT_set_expires(FlowTable *s, PyObject *args)
{
    READY(s);
    Py_ssize_t slot;
    double t;
    if (!PyArg_ParseTuple(args, "nd", &slot, &t))
        return NULL;
    if (check_slot(s, slot) < 0)
        return NULL;
    s->t.e[slot].expires = t;
    Py_RETURN_NONE;
}

static PyObject *FT_expire(FlowTable *s, PyObject *args)
{
    READY(s);
    double now;
    long long budget = 0xFFFFFFFFll;
    if (!PyArg_ParseTuple(args, "d|L", &now, &budget))
        return NULL;
    if (budget < 0) {
        PyErr_SetString(PyExc_ValueError, "budget must be >= 0");
        return NULL;
    }
    uint32_t cap = (unsigned long long)budget < s->t.hw ? (uint32_t)budget : s->t.hw;
    uint32_t *out = PyMem_Malloc(((size_t)cap + 1) * sizeof(uint32_t));
    if (!out)
        return PyErr_NoMemory();
    uint32_t n = pn_expire(&s->t, now, cap, out);
    PyObject *l = PyList_New(n);
    for (uint32_t i = 0; l && i < n; i++)
        PyList_SET_ITEM(l, i, PyLong_FromUnsignedLong(out[i]));
    PyMem_Free(out);
    return l;
}

static PyObject *FT_dest_counters(FlowTable *s, PyObject *args, PyObject *kw)
{
    READY(s);
    static char *kwlist[] = {"dest_id", "reset", NULL};
    int id, reset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "i|p", kwlist, &id, &reset))
        return NULL;
    if (id < 0 || (uint32_t)id >= s->t.ndests) {
        PyErr_SetString(PyExc_ValueError, "dest_id out of range");
        return NULL;
    }
    pn_counters *c = &s->t.dests[id];
    PyObject *r = Py_BuildValue("(KKKK)", (unsigned long long)c->pkts_in, (unsigned long long)c->pkts_out,
                                (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out);
    if (reset)
        memset(c, 0, sizeof(*c));
    return r;
}

static PyObject *run_process(FlowTable *s, PyObject *args, int until_punt)
{
    READY(s);
    Py_buffer buf, desc;
    Py_ssize_t n;
    int ifindex;
    double now;
    if (!PyArg_ParseTuple(args, "w*w*nid", &buf, &desc, &n, &ifindex, &now))
        return NULL;
    PyObject *r = NULL;
    const char *bb = buf.buf, *db = desc.buf;
    if (n < 0 || (size_t)n > UINT32_MAX || (size_t)n > (size_t)desc.len / sizeof(pn_desc)) {
        PyErr_SetString(PyExc_ValueError, "desc holds fewer than n descriptors");
    } else if (n > 0 && buf.len > 0 && db < bb + buf.len && bb < db + (size_t)n * sizeof(pn_desc)) {
        PyErr_SetString(PyExc_ValueError, "desc and buf share memory");
    } else {
        /* Descriptors are read as structs: a misaligned buffer is worked on through an aligned copy. */
        pn_desc *d = (pn_desc *)desc.buf, *tmp = NULL;
        if ((uintptr_t)desc.buf % _Alignof(pn_desc)) {
            tmp = PyMem_Malloc((size_t)n * sizeof(pn_desc) + 1);
            if (!tmp) {
                PyErr_NoMemory();
                goto done;
            }
            memcpy(tmp, desc.buf, (size_t)n * sizeof(pn_desc));
            d = tmp;
        }
        uint32_t v = until_punt
                         ? pn_process_until_punt(&s->t, buf.buf, (size_t)buf.len, d, (uint32_t)n, ifindex, now)
                         : pn_process(&s->t, buf.buf, (size_t)buf.len, d, (uint32_t)n, ifindex, now);
        if (tmp) {
            memcpy(desc.buf, tmp, (size_t)n * sizeof(pn_desc));
            PyMem_Free(tmp);
        }
        r = PyLong_FromUnsignedLong(v);
    }
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&desc);
    return r;
}

static PyObject *FT_process(FlowTable *s, PyObject *args) { return run_process(s, args, 0); }
static PyObject *FT_process_until_punt(FlowTable *s, PyObject *args) { return run_process(s, args, 1); }

static PyObject *FT_stats(FlowTable *s, PyObject *unused)
{
    READY(s);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    PyObject *v = PyLong_FromUnsignedLongLong(s->t.forwarded);
    if (!v || PyDict_SetItemString(d, "forwarded", v) < 0)
        goto fail;
    Py_DECREF(v);
    for (int i = 0; i < PN_PUNT_NREASONS; i++) {
        char name[64];
        snprintf(name, sizeof(name), "punt_%s", PUNT_NAMES[i]);
        v = PyLong_FromUnsignedLongLong(s->t.punts[i]);
        if (!v || PyDict_SetItemString(d, name, v) < 0)
            goto fail;
        Py_DECREF(v);
    }
    return d;
fail:
    Py_XDECREF(v);
    Py_DECREF(d);
    return NULL;
}

static PyMethodDef FT_methods[] = {
    {"memory_bytes", (PyCFunction)FT_memory_bytes, METH_NOARGS, "Bytes allocated for the table."},
    {"set_interface", (PyCFunction)FT_set_interface, METH_VARARGS, "set_interface(index, mac, addr, mtu, offload=False)"},
    {"set_timeouts", (PyCFunction)FT_set_timeouts, METH_VARARGS, "set_timeouts(tcp_established, udp)"},
    {"hash", (PyCFunction)FT_hash, METH_VARARGS, "hash(proto, a, aport, b, bport): the keyed SipHash-1-3"},
    {"insert", (PyCFunction)FT_insert, METH_VARARGS, "insert(...) -> slot, -1 full, -2 key in use"},
    {"lookup", (PyCFunction)FT_lookup, METH_VARARGS, "lookup(proto, src, sport, dst, dport) -> slot<<1|dir or -1"},
    {"remove", (PyCFunction)FT_remove, METH_O, "remove(slot) -> bool"},
    {"get", (PyCFunction)FT_get, METH_O, "get(slot) -> dict"},
    {"set_fast", (PyCFunction)FT_set_fast, METH_VARARGS,
     "set_fast(slot, in_if, client_mac, out_if, rs_mac, dest_id, toa_kind, state=ESTABLISHED, in_table=0, "
     "toa_due=False)"},
    {"set_tcp_states", (PyCFunction)FT_set_tcp_states, METH_VARARGS,
     "set_tcp_states(next, timeouts): the fast path moves TCP states itself from now on"},
    {"drain_events", (PyCFunction)FT_drain_events, METH_NOARGS,
     "drain_events() -> [slot << 8 | 0x80 output seen | 0x40 TOA inserted | 0x20 MSS clamped | new state] since "
     "the last call"},
    {"clear_fast", (PyCFunction)FT_clear_fast, METH_O, "clear_fast(slot)"},
    {"expires", (PyCFunction)FT_expires, METH_O, "expires(slot) -> float"},
    {"set_expires", (PyCFunction)FT_set_expires, METH_VARARGS, "set_expires(slot, t)"},
    {"expire", (PyCFunction)FT_expire, METH_VARARGS, "expire(now, budget=all) -> removed slots"},
    {"dest_counters", (PyCFunction)(void (*)(void))FT_dest_counters, METH_VARARGS | METH_KEYWORDS,
     "dest_counters(dest_id, reset=False) -> (pkts_in, pkts_out, bytes_in, bytes_out)"},
    {"process", (PyCFunction)FT_process, METH_VARARGS, "process(buf, desc, n, ifindex, now) -> punts"},
    {"process_until_punt", (PyCFunction)FT_process_until_punt, METH_VARARGS,
     "process_until_punt(buf, desc, n, ifindex, now) -> descriptors consumed (stops after the first punt)"},
    {"stats", (PyCFunction)FT_stats, METH_NOARGS, "counters: forwarded, punt_<reason>"},
    {NULL}};

static PyGetSetDef FT_getset[] = {
    {"capacity", (getter)FT_capacity, NULL, "hard limit on flows", NULL},
    {"key", (getter)FT_key, NULL, "the 16-byte SipHash key", NULL},
    {NULL}};

static PySequenceMethods FT_seq = {.sq_length = (lenfunc)FT_len};

static PyTypeObject FlowTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pylvs._native.FlowTable",
    .tp_basicsize = sizeof(FlowTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Flow table and established-flow fast path (twin: pylvs._pure.flowtable.FlowTable).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FT_init,
    .tp_dealloc = (destructor)FT_dealloc,
    .tp_methods = FT_methods,
    .tp_getset = FT_getset,
    .tp_as_sequence = &FT_seq,
};

static PyMethodDef methods[] = {
    {"csum_partial", py_csum_partial, METH_VARARGS, "Unfolded one's-complement sum (RFC 1071)."},
    {"checksum", py_checksum, METH_VARARGS, "The RFC 1071 checksum of data (plus an unfolded initial sum)."},
    {"csum_fold", py_csum_fold, METH_O, "Fold and complement an unfolded sum."},
    {"pseudo_header_sum", py_pseudo_header_sum, METH_VARARGS, "Unfolded TCP/UDP pseudo-header sum."},
    {"csum_replace2", py_csum_replace2, METH_VARARGS, "RFC 1624 update for a 16-bit field."},
    {"csum_replace4", py_csum_replace4, METH_VARARGS, "RFC 1624 update for a 32-bit field."},
    {"csum_replace_bytes", py_csum_replace_bytes, METH_VARARGS, "RFC 1624 update for an even run of bytes."},
    {"complete_checksum", py_complete_checksum, METH_O,
     "Fill in the TCP/UDP checksum of a CHECKSUM_PARTIAL IPv4 frame in full; False if not one."},
    {"siphash13", py_siphash13, METH_VARARGS, "SipHash-1-3(key16, data) -> 64-bit int."},
    {"siphash24", py_siphash24, METH_VARARGS, "SipHash-2-4(key16, data) -> 64-bit int."},
    {NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "pylvs._native", "pylvs's C accelerator.", -1, methods};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&FlowTableType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m)
        return NULL;
    Py_INCREF(&FlowTableType);
    if (PyModule_AddObject(m, "FlowTable", (PyObject *)&FlowTableType) < 0) {
        Py_DECREF(&FlowTableType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "DESC_SIZE", sizeof(pn_desc));
    PyModule_AddIntConstant(m, "ENTRY_SIZE", sizeof(pn_entry));
    PyModule_AddIntConstant(m, "MAX_INTERFACES", PN_MAX_IFACES);
    PyModule_AddIntConstant(m, "CSUM_PARTIAL", PN_CSUM_PARTIAL);
    PyModule_AddIntConstant(m, "CSUM_VALID", PN_CSUM_VALID);
    if (PyModule_AddFunctions(m, pn_io_methods) < 0) { /* module_io.c */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
