/* The harness's reference models, written independently of the core (see the top of harness.c): the
 * one's-complement checksum and CHECKSUM_PARTIAL completion, SipHash-c-d, the flow table's model (and the
 * driver that runs the table against it), and the fast path's classifier and rewrite. */
#include "harness.h"

/* ---------------------------------------------------------------- reference checksum */

/* One's-complement add of two values in [0, 0xFFFF]; the result is 0 only if both are 0. */
uint32_t oc_add(uint32_t a, uint32_t b)
{
    uint32_t s = a + b;
    return s > 0xFFFF ? s - 0xFFFF : s;
}

/* The one's-complement sum of big-endian 16-bit words, a byte at a time (odd tail = high half of a
 * zero-padded word).  0 only for all-zero data, as pn_fold16() of pn_csum_partial(). */
uint32_t ref_sum(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = oc_add(s, (i & 1) ? p[i] : (uint32_t)p[i] << 8);
    return s;
}

int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* L4 pseudo-header sum (RFC 793 §3.1) for the IPv4 header at ip, one's-complement folded. */
uint32_t ref_pseudo(const uint8_t *ip, uint32_t l4len)
{
    return oc_add(oc_add(ref_sum(ip + 12, 8), ip[9]), l4len);
}

/* The CHECKSUM_PARTIAL completion (pn_complete_l4_checksum), from its documented meaning: for an
 * unfragmented IPv4 TCP (>= 20 bytes) or UDP (>= 8 bytes) segment within the frame, the L4 checksum in full
 * from the pseudo header and the segment (UDP's computed 0 sent as 0xFFFF); anything else left alone. */
int ref_complete(uint8_t *f, size_t len)
{
    if (len < 34 || get16(f + 12) != 0x0800 || f[14] >> 4 != 4)
        return 0;
    size_t ihl = (size_t)(f[14] & 15) * 4, total = get16(f + 16);
    if (ihl < 20 || total < ihl || 14 + total > len || (get16(f + 20) & 0x3FFF))
        return 0;
    uint8_t *l4 = f + 14 + ihl;
    uint32_t l4len = (uint32_t)(total - ihl);
    size_t at;
    if (f[23] == 6 && l4len >= 20)
        at = 16;
    else if (f[23] == 17 && l4len >= 8)
        at = 6;
    else
        return 0;
    put16(l4 + at, 0);
    uint32_t s = oc_add(oc_add(oc_add(ref_sum(f + 26, 8), f[23]), l4len), ref_sum(l4, l4len));
    uint16_t c = (uint16_t)~s;
    put16(l4 + at, f[23] == 17 && c == 0 ? 0xFFFF : c);
    return 1;
}

/* ---------------------------------------------------------------- reference SipHash-c-d */

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static void sipround(uint64_t v[4])
{
    v[0] += v[1]; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32);
    v[2] += v[3]; v[3] = rotl(v[3], 16); v[3] ^= v[2];
    v[0] += v[3]; v[3] = rotl(v[3], 21); v[3] ^= v[0];
    v[2] += v[1]; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32);
}

uint64_t ref_siphash(const uint8_t k[16], const uint8_t *m, size_t len, int c, int d)
{
    uint64_t k0 = 0, k1 = 0;
    for (int i = 0; i < 8; i++) {
        k0 |= (uint64_t)k[i] << (8 * i);
        k1 |= (uint64_t)k[8 + i] << (8 * i);
    }
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL, k0 ^ 0x6c7967656e657261ULL,
                     k1 ^ 0x7465646279746573ULL};
    /* Pad as the paper says: zeros up to 8 bytes short of a multiple of 8, then the length byte. */
    size_t nb = len / 8 + 1;
    for (size_t b = 0; b < nb; b++) {
        uint64_t w = 0;
        for (int i = 0; i < 8; i++) {
            size_t at = b * 8 + (size_t)i;
            uint64_t byte = at < len ? m[at] : (i == 7 ? (uint64_t)(len & 0xFF) : 0);
            w |= byte << (8 * i);
        }
        v[3] ^= w;
        for (int r = 0; r < c; r++)
            sipround(v);
        v[0] ^= w;
    }
    v[2] ^= 0xFF;
    for (int r = 0; r < d; r++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---------------------------------------------------------------- flow table against a model */

#define FT_MAXCAP 300

typedef struct {
    int used, has_out;
    uint8_t proto, mode;
    uint32_t caddr, vaddr, laddr, daddr;
    uint16_t cport, vport, lport, dport;
    double expires;
} mflow;

static struct {
    pn_table t;
    int live;
    uint32_t cap, count, hw, cursor, nfree, ops;
    uint32_t freelist[FT_MAXCAP];
    mflow m[FT_MAXCAP];
} FT;

/* Small pools, so that keys collide (duplicates, shared chains) and also some random values. */
static const uint32_t addr_pool[] = {0x0100000Au, 0x0200000Au, 0x0101A8C0u, 0u, 0xFFFFFFFFu};
static const uint16_t port_pool[] = {0x5000, 0xBB01, 0, 0xFFFF};

uint32_t r_addr(void) { return pct(10) ? (uint32_t)rnd64() : addr_pool[rn(5)]; }
uint16_t r_port(void) { return pct(10) ? (uint16_t)rnd64() : port_pool[rn(4)]; }
uint8_t r_proto(void) { return pct(95) ? (pct(50) ? 6 : 17) : (uint8_t)rnd64(); }

static int m_in_is(const mflow *f, uint8_t p, uint32_t a, uint16_t ap, uint32_t b, uint16_t bp)
{
    return f->proto == p && f->caddr == a && f->cport == ap && f->vaddr == b && f->vport == bp;
}

static int m_out_is(const mflow *f, uint8_t p, uint32_t a, uint16_t ap, uint32_t b, uint16_t bp)
{
    return f->has_out && f->proto == p && f->daddr == a && f->dport == ap && f->laddr == b && f->lport == bp;
}

/* slot << 1 | dir of the flow holding the key, or -1.  A flow whose outbound key equals its own inbound
 * key is found by the outbound link (linked last, so first in the chain; the Python twin's index dict
 * overwrites likewise). */
static int64_t m_lookup(uint8_t p, uint32_t a, uint16_t ap, uint32_t b, uint16_t bp)
{
    int64_t r = -1;
    for (uint32_t s = 0; s < FT.hw; s++) {
        const mflow *f = &FT.m[s];
        if (!f->used)
            continue;
        int64_t here = m_out_is(f, p, a, ap, b, bp) ? (int64_t)(s << 1 | 1) : m_in_is(f, p, a, ap, b, bp) ? (int64_t)(s << 1) : -1;
        if (here >= 0) {
            CHECK(r < 0, "model: key in two flows (slots %u and %u): the table accepted a duplicate",
                  (unsigned)(r >> 1), s);
            r = here;
        }
    }
    return r;
}

static void ft_check_counts(void)
{
    CHECK(FT.t.count == FT.count, "count %u, model %u", FT.t.count, FT.count);
    CHECK(FT.t.hw == FT.hw, "high-water %u, model %u", FT.t.hw, FT.hw);
    CHECK(FT.t.nfree == FT.nfree, "free slots %u, model %u", FT.t.nfree, FT.nfree);
    CHECK(FT.t.capacity == FT.cap, "capacity %u changed (model %u)", FT.t.capacity, FT.cap);
}

static void ft_new(void)
{
    if (FT.live)
        pn_table_free(&FT.t);
    memset(&FT, 0, sizeof(FT));
    FT.cap = 1 + rn(pct(20) ? 8 : FT_MAXCAP);
    uint8_t key[16];
    rfill(key, 16);
    uint32_t ndests = pct(2) ? 65536 : 1 + rn(16);
    CHECK(pn_table_init(&FT.t, FT.cap, key, ndests) == 0, "pn_table_init(%u, ndests=%u) failed", FT.cap, ndests);
    CHECK(pn_table_memory(&FT.t) >= (size_t)FT.cap * 64, "pn_table_memory too small");
    FT.live = 1;
    ft_check_counts();
}

static void ft_verify_all(void)
{
    for (uint32_t s = 0; s < FT.hw; s++) {
        const mflow *f = &FT.m[s];
        const pn_entry *e = &FT.t.e[s];
        CHECK(!!(e->flags & PN_F_USED) == f->used, "slot %u used flag %d, model %d", s, e->flags & PN_F_USED, f->used);
        if (!f->used)
            continue;
        CHECK(e->proto == f->proto && e->mode == f->mode && e->caddr == f->caddr && e->cport == f->cport &&
                  e->vaddr == f->vaddr && e->vport == f->vport && e->laddr == f->laddr && e->lport == f->lport &&
                  e->daddr == f->daddr && e->dport == f->dport && e->expires == f->expires &&
                  !!(e->flags & PN_F_HAS_OUT) == f->has_out,
              "slot %u entry differs from the model", s);
        int64_t want = m_lookup(f->proto, f->caddr, f->cport, f->vaddr, f->vport);
        int64_t got = pn_lookup(&FT.t, f->proto, f->caddr, f->cport, f->vaddr, f->vport);
        CHECK(got == want, "slot %u inbound key: lookup %" PRId64 ", model %" PRId64, s, got, want);
        if (f->has_out) {
            got = pn_lookup(&FT.t, f->proto, f->daddr, f->dport, f->laddr, f->lport);
            CHECK(got == (int64_t)(s << 1 | 1), "slot %u outbound key: lookup %" PRId64, s, got);
        }
    }
    ft_check_counts();
}

static void ft_remove_model(uint32_t slot)
{
    FT.m[slot].used = 0;
    FT.freelist[FT.nfree++] = slot;
    FT.count--;
}

void ft_op(void)
{
    g_phase = "flowtable";
    if (!FT.live || FT.ops > 3000 || pct(1))
        ft_new();
    FT.ops++;
    st_ftops++;
    uint32_t r = rn(100);
    if (r < 38) { /* insert */
        mflow f = {0};
        f.proto = r_proto();
        f.caddr = r_addr(), f.vaddr = r_addr(), f.laddr = r_addr(), f.daddr = r_addr();
        f.cport = r_port(), f.vport = r_port(), f.lport = r_port(), f.dport = r_port();
        if (pct(3)) { /* its outbound key the same as its inbound one */
            f.daddr = f.caddr, f.dport = f.cport, f.laddr = f.vaddr, f.lport = f.vport;
        }
        f.mode = pct(3) ? (uint8_t)(4 + rn(252)) : (uint8_t)rn(4);
        f.has_out = pct(60);
        f.expires = (double)rn(12) + (pct(30) ? 0.5 : 0.0);
        int64_t want;
        if (f.mode > PN_FULLNAT)
            want = -3;
        else if (FT.count >= FT.cap)
            want = -1;
        else if (m_lookup(f.proto, f.caddr, f.cport, f.vaddr, f.vport) >= 0 ||
                 (f.has_out && m_lookup(f.proto, f.daddr, f.dport, f.laddr, f.lport) >= 0))
            want = -2;
        else
            want = FT.nfree ? FT.freelist[FT.nfree - 1] : FT.hw;
        int64_t got = pn_insert(&FT.t, f.proto, f.caddr, f.cport, f.vaddr, f.vport, f.laddr, f.lport, f.daddr,
                                f.dport, f.mode, f.has_out ? (int)(1 + rn(5)) : 0, f.expires);
        CHECK(got == want, "pn_insert (count %u/%u, mode %u, has_out %d): %" PRId64 ", model %" PRId64,
              FT.count, FT.cap, f.mode, f.has_out, got, want);
        if (got >= 0) {
            uint32_t slot = (uint32_t)got;
            if (FT.nfree)
                FT.nfree--;
            else
                FT.hw++;
            f.used = 1;
            FT.m[slot] = f;
            FT.count++;
            const pn_entry *e = &FT.t.e[slot];
            CHECK(e->flags == (PN_F_USED | (f.has_out ? PN_F_HAS_OUT : 0)), "new entry flags %#x", e->flags);
            CHECK(pn_lookup(&FT.t, f.proto, f.caddr, f.cport, f.vaddr, f.vport) ==
                      m_lookup(f.proto, f.caddr, f.cport, f.vaddr, f.vport),
                  "new entry not found by its inbound key");
        }
    } else if (r < 68) { /* lookup: mostly a key the model holds */
        uint8_t p;
        uint32_t a, b;
        uint16_t ap, bp;
        uint32_t s = rn(FT.hw + 1);
        if (s < FT.hw && FT.m[s].used && pct(80)) {
            const mflow *f = &FT.m[s];
            if (f->has_out && pct(50))
                p = f->proto, a = f->daddr, ap = f->dport, b = f->laddr, bp = f->lport;
            else
                p = f->proto, a = f->caddr, ap = f->cport, b = f->vaddr, bp = f->vport;
            if (pct(20)) /* near miss */
                switch (rn(5)) {
                case 0: p ^= (uint8_t)(1 + rn(255)); break;
                case 1: a ^= 1u << rn(32); break;
                case 2: ap ^= (uint16_t)(1u << rn(16)); break;
                case 3: b ^= 1u << rn(32); break;
                default: bp ^= (uint16_t)(1u << rn(16));
                }
        } else {
            p = r_proto(), a = r_addr(), ap = r_port(), b = r_addr(), bp = r_port();
        }
        int64_t got = pn_lookup(&FT.t, p, a, ap, b, bp), want = m_lookup(p, a, ap, b, bp);
        CHECK(got == want, "pn_lookup: %" PRId64 ", model %" PRId64, got, want);
    } else if (r < 83) { /* remove */
        uint32_t slot = pct(3) ? (uint32_t)rnd64() : rn(FT.cap + 4);
        int want = slot < FT.hw && FT.m[slot].used;
        int got = pn_remove(&FT.t, slot);
        CHECK(got == want, "pn_remove(%u): %d, model %d", slot, got, want);
        if (want)
            ft_remove_model(slot);
    } else if (r < 93) { /* expire */
        double now = (double)rn(13) + (pct(30) ? 0.5 : 0.0);
        uint32_t budget = pct(10) ? 0xFFFFFFFFu : pct(10) ? 0 : rn(FT.hw + 3);
        uint32_t steps = budget < FT.hw ? budget : FT.hw;
        uint32_t *out = (uint32_t *)exact_alloc((size_t)steps * sizeof(uint32_t)); /* pn_expire returns <= steps */
        uint32_t want[FT_MAXCAP], nwant = 0;
        uint32_t cur = FT.cursor;
        for (uint32_t i = 0; i < steps; i++) {
            uint32_t slot = cur;
            cur = slot + 1 >= FT.hw ? 0 : slot + 1;
            if (FT.m[slot].used && FT.m[slot].expires <= now)
                want[nwant++] = slot;
        }
        uint32_t n = pn_expire(&FT.t, now, budget, out);
        CHECK(n == nwant, "pn_expire(now=%g, budget=%u): %u removed, model %u", now, budget, n, nwant);
        for (uint32_t i = 0; i < n; i++)
            CHECK(out[i] == want[i], "pn_expire out[%u] = %u, model %u", i, out[i], want[i]);
        FT.cursor = cur;
        CHECK(FT.t.cursor == FT.cursor, "expiry cursor %u, model %u", FT.t.cursor, FT.cursor);
        for (uint32_t i = 0; i < n; i++)
            ft_remove_model(want[i]);
        free(out);
    } else if (r < 97) { /* the caller moves an expiry (as set_expires does) */
        uint32_t slot = rn(FT.hw + 1);
        if (slot < FT.hw && FT.m[slot].used) {
            FT.m[slot].expires = (double)rn(12);
            FT.t.e[slot].expires = FT.m[slot].expires;
        }
    } else {
        ft_verify_all();
    }
    ft_check_counts();
}

/* One table at capacity 1 << 20, filled to the brim and emptied (half by remove, half by the sweep). */
void ft_big(void)
{
    g_phase = "flowtable-1M";
    const uint32_t cap = 1u << 20;
    pn_table t;
    uint8_t key[16];
    rfill(key, 16);
    CHECK(pn_table_init(&t, cap, key, 1) == 0, "pn_table_init(1 << 20) failed");
    const uint32_t vip = 0x0A0A0A0Au, lip = 0x0B0B0B0Bu;
    for (uint32_t i = 0; i < cap; i++) {
        int64_t s = pn_insert(&t, 6, 0xC0000000u ^ i, (uint16_t)i, vip, 0x5000, lip, 0x901F, 0xC0000000u ^ i,
                              (uint16_t)(i >> 4), PN_FULLNAT, 1, 5.0);
        CHECK(s == (int64_t)i, "1M fill: insert %u returned %" PRId64, i, s);
    }
    CHECK(t.count == cap && t.hw == cap, "1M fill: count %u hw %u", t.count, t.hw);
    CHECK(pn_insert(&t, 6, 1, 1, 2, 2, 3, 3, 4, 4, PN_NAT, 0, 5.0) == -1, "insert into a full table not -1");
    CHECK(pn_insert(&t, 6, 0xC0000000u, 0, vip, 0x5000, 9, 9, 9, 9, PN_NAT, 0, 5.0) == -1,
          "full and duplicate: capacity is checked first (-1)");
    for (int k = 0; k < 20000; k++) {
        uint32_t i = rn(cap);
        CHECK(pn_lookup(&t, 6, 0xC0000000u ^ i, (uint16_t)i, vip, 0x5000) == (int64_t)(i << 1), "1M lookup in %u", i);
        CHECK(pn_lookup(&t, 6, 0xC0000000u ^ i, (uint16_t)(i >> 4), lip, 0x901F) == (int64_t)(i << 1 | 1),
              "1M lookup out %u", i);
    }
    for (uint32_t i = 0; i < cap; i += 2)
        CHECK(pn_remove(&t, i) == 1, "1M remove %u", i);
    CHECK(t.count == cap / 2, "1M: count %u after removing half", t.count);
    /* Nothing has expired at 4.0: a full sweep writes nothing (so out may be NULL) and ends where it began. */
    CHECK(pn_expire(&t, 4.0, 0xFFFFFFFFu, NULL) == 0 && t.cursor == 0, "1M: sweep at 4.0");
    uint32_t *out = (uint32_t *)exact_alloc((size_t)cap / 2 * sizeof(uint32_t));
    uint32_t n = pn_expire(&t, 10.0, cap, out);
    CHECK(n == cap / 2, "1M expire removed %u, want %u", n, cap / 2);
    for (uint32_t i = 0; i < n; i++)
        CHECK(out[i] == 2 * i + 1, "1M expire out[%u] = %u", i, out[i]);
    CHECK(t.count == 0 && t.nfree == cap, "1M emptied: count %u nfree %u", t.count, t.nfree);
    for (int k = 0; k < 1000; k++) {
        uint32_t i = rn(cap);
        CHECK(pn_lookup(&t, 6, 0xC0000000u ^ i, (uint16_t)i, vip, 0x5000) == -1, "1M emptied: %u still found", i);
    }
    for (uint32_t i = 0; i < cap; i++) /* all buckets empty again */
        CHECK(i >= t.mask + 1 || t.buckets[i] == PN_NIL, "1M emptied: bucket %u not empty", i);
    free(out);
    pn_table_free(&t);
}

/* At the end of the run: the last table against the model once more, then freed. */
void ft_done(void)
{
    if (FT.live) {
        ft_verify_all();
        pn_table_free(&FT.t);
    }
}

/* ---------------------------------------------------------------- fast path: the reference */

/* ---- the reference classifier: the documented order of checks in fastpath.c, written independently */

static int ref_has_option(const uint8_t *o, size_t n, uint8_t kind)
{
    size_t i = 0;
    while (i < n) {
        if (o[i] == 0) /* EOL */
            return 0;
        if (o[i] == 1) { /* NOP */
            i++;
            continue;
        }
        if (n - i < 2 || o[i + 1] < 2 || o[i + 1] > n - i)
            return 0;
        if (o[i] == kind)
            return 1;
        i += o[i + 1];
    }
    return 0;
}

refout ref_classify(const pn_table *t, const uint8_t *buf, size_t buflen, uint32_t off, uint32_t len,
                    int ifindex, double now)
{
    refout r = {.reason = -1};
#define PUNT(x) do { r.reason = (x); return r; } while (0)
    if (ifindex < 0 || ifindex >= PN_MAX_IFACES || !t->ifaces[ifindex].used)
        PUNT(PN_PUNT_IFACE);
    if ((uint64_t)off + len > buflen)
        PUNT(PN_PUNT_MALFORMED);
    const uint8_t *f = buf + off;
    if (len < ETH || memcmp(f, t->ifaces[ifindex].mac, 6) || get16(f + 12) != 0x0800)
        PUNT(PN_PUNT_NOT_IPV4);
    const uint8_t *ip = f + ETH;
    if (len < ETH + 20 || ip[0] >> 4 != 4 || (ip[0] & 15) < 5)
        PUNT(PN_PUNT_MALFORMED);
    if ((ip[0] & 15) > 5)
        PUNT(PN_PUNT_IP_OPTIONS);
    uint32_t total = get16(ip + 2);
    if (total < 20 || ETH + total > len || ref_sum(ip, 20) != 0xFFFF)
        PUNT(PN_PUNT_MALFORMED);
    if (get16(ip + 6) & 0x3FFF)
        PUNT(PN_PUNT_FRAGMENT);
    const uint8_t *l4 = ip + 20;
    uint32_t l4len = total - 20;
    uint32_t l4sum = 0;
    size_t doff = 0;
    if (ip[9] == 6 || ip[9] == 17)
        l4sum = oc_add(ref_pseudo(ip, l4len), ref_sum(l4, l4len));
    if (ip[9] == 6) {
        if (l4len < 20)
            PUNT(PN_PUNT_MALFORMED);
        doff = (size_t)(l4[12] >> 4) * 4;
        if (doff < 20 || doff > l4len || l4sum != 0xFFFF)
            PUNT(PN_PUNT_MALFORMED);
    } else if (ip[9] == 17) {
        if (l4len < 8 || get16(l4 + 4) != l4len || (get16(l4 + 6) && l4sum != 0xFFFF))
            PUNT(PN_PUNT_MALFORMED);
    } else {
        PUNT(PN_PUNT_PROTO);
    }
    /* The flow: the first (only) one whose inbound or outbound key the packet's tuple is. */
    int found = 0;
    uint32_t s_in = 0, s_out = 0;
    int have_in = 0, have_out = 0;
    for (uint32_t s = 0; s < t->hw; s++) {
        const pn_entry *e = &t->e[s];
        if (!(e->flags & PN_F_USED) || e->proto != ip[9])
            continue;
        if ((e->flags & PN_F_HAS_OUT) && !memcmp(ip + 12, &e->daddr, 4) && !memcmp(ip + 16, &e->laddr, 4) &&
            !memcmp(l4, &e->dport, 2) && !memcmp(l4 + 2, &e->lport, 2))
            s_out = s, have_out = 1;
        if (!memcmp(ip + 12, &e->caddr, 4) && !memcmp(ip + 16, &e->vaddr, 4) && !memcmp(l4, &e->cport, 2) &&
            !memcmp(l4 + 2, &e->vport, 2))
            s_in = s, have_in = 1;
    }
    found = have_in || have_out;
    if (!found)
        PUNT(PN_PUNT_NO_FLOW);
    CHECK(!(have_in && have_out) || s_in == s_out, "table holds one key in two flows (%u, %u)", s_in, s_out);
    r.dir = have_out ? PN_DIR_OUT : PN_DIR_IN;
    r.slot = have_out ? s_out : s_in;
    const pn_entry *e = &t->e[r.slot];
    if (!(e->flags & PN_F_FAST))
        PUNT(PN_PUNT_NOT_FAST);
    if (!(e->expires > now))
        PUNT(PN_PUNT_EXPIRED);
    if (ip[9] == 6 && ((l4[13] & 7) || !(l4[13] & 0x10)))
        PUNT(PN_PUNT_TCP_FLAGS);
    r.egress = r.dir == PN_DIR_IN ? e->out_if : e->in_if;
    if (r.egress >= PN_MAX_IFACES || !t->ifaces[r.egress].used)
        PUNT(PN_PUNT_IFACE);
    r.routed = e->mode != PN_DR;
    if (r.routed && ip[8] < 2)
        PUNT(PN_PUNT_TTL);
    r.encap = r.dir == PN_DIR_IN && e->mode == PN_TUN;
    uint64_t limit = t->ifaces[r.egress].mtu;
    if (limit > 65535) /* no IPv4 datagram is longer, whatever the MTU */
        limit = 65535;
    if ((uint64_t)total + (r.encap ? 20 : 0) > limit)
        PUNT(PN_PUNT_MTU);
    if (r.dir == PN_DIR_IN && e->mode == PN_FULLNAT && ip[9] == 6 && e->toa_kind &&
        ref_has_option(l4 + 20, doff - 20, e->toa_kind))
        PUNT(PN_PUNT_TOA);
    if (r.encap && off < 20)
        PUNT(PN_PUNT_HEADROOM);
    r.total = total;
    return r;
#undef PUNT
}

/* Apply the expected rewrite of a forwarded frame to exp (a copy of the buffer before processing); mark the
 * L4 checksum bytes in skip (checked by verifying instead: RFC 1624 and a recompute may differ in the sign
 * of zero).  Returns the new offset. */
uint32_t ref_forward(const pn_table *t, const refout *r, uint8_t *exp, uint8_t *skip, uint32_t off,
                     uint32_t *l4csum_at)
{
    const pn_entry *e = &t->e[r->slot];
    uint8_t *f = exp + off, *ip = f + ETH, *l4 = ip + 20;
    int udp = ip[9] == 17;
    if (r->routed)
        ip[8]--;
    uint32_t csum_at = off + ETH + 20 + (udp ? 6 : 16);
    uint16_t l4c = get16(exp + csum_at);
    if (r->dir == PN_DIR_IN) {
        if (e->mode == PN_FULLNAT) {
            memcpy(ip + 12, &e->laddr, 4);
            memcpy(l4, &e->lport, 2);
        }
        if (e->mode == PN_NAT || e->mode == PN_FULLNAT) {
            memcpy(ip + 16, &e->daddr, 4);
            memcpy(l4 + 2, &e->dport, 2);
        }
    } else {
        memcpy(ip + 12, &e->vaddr, 4);
        memcpy(l4, &e->vport, 2);
        if (e->mode == PN_FULLNAT) {
            memcpy(ip + 16, &e->caddr, 4);
            memcpy(l4 + 2, &e->cport, 2);
        }
    }
    put16(ip + 10, 0);
    put16(ip + 10, (uint16_t)~ref_sum(ip, 20)); /* never all zero (version 4): no -0 ambiguity */
    if (!(udp && l4c == 0)) {
        skip[csum_at] = skip[csum_at + 1] = 1;
        *l4csum_at = csum_at;
    } else {
        *l4csum_at = UINT32_MAX; /* UDP without checksum: the 0 stays, compared as a plain byte */
    }
    uint32_t noff = off;
    if (r->encap) {
        noff = off - 20;
        uint8_t *o = exp + noff + ETH;
        memmove(exp + noff, f, ETH);
        o[0] = 0x45;
        o[1] = ip[1];
        put16(o + 2, r->total + 20);
        o[4] = ip[4], o[5] = ip[5];
        put16(o + 6, get16(ip + 6) & 0x4000);
        o[8] = ip[8];
        o[9] = 4;
        put16(o + 10, 0);
        memcpy(o + 12, &t->ifaces[r->egress].addr, 4);
        memcpy(o + 16, &e->daddr, 4);
        put16(o + 10, (uint16_t)~ref_sum(o, 20));
    }
    memcpy(exp + noff, r->dir == PN_DIR_IN ? e->rs_mac : e->client_mac, 6);
    memcpy(exp + noff + 6, t->ifaces[r->egress].mac, 6);
    return noff;
}
