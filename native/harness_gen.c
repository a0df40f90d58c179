/* The fast path's random input for the harness (see the top of harness.c): tables with interfaces and
 * flows, and frames for them (mostly valid, with correct checksums; some aimed at edges, some mutated). */
#include "harness.h"

/* ---------------------------------------------------------------- fast path: tables and frames */

fp_state FP;

static uint32_t r_mtu(void)
{
    static const uint32_t pool[] = {0, 20, 68, 576, 1400, 1500, 1500, 1500, 9000, 65535, 65536, 0xFFFFFFFFu};
    return pct(10) ? rn(70000) : pool[rn(sizeof(pool) / sizeof(pool[0]))];
}

int used_iface(const pn_table *t)
{
    int c[PN_MAX_IFACES], n = 0;
    for (int i = 0; i < PN_MAX_IFACES; i++)
        if (t->ifaces[i].used)
            c[n++] = i;
    return n ? c[rn((uint32_t)n)] : (int)rn(PN_MAX_IFACES);
}

void fp_new(void)
{
    if (FP.live)
        pn_table_free(&FP.t);
    pn_table *t = &FP.t;
    uint32_t cap = 1 + rn(64);
    uint8_t key[16];
    rfill(key, 16);
    uint32_t ndests = 1 + rn(8);
    CHECK(pn_table_init(t, cap, key, ndests) == 0, "fast path pn_table_init failed");
    FP.live = 1;
    FP.batches = 0;
    FP.now = 1000.0;
    t->tcp_timeout = rdbl(1, 1000);
    t->udp_timeout = rdbl(1, 1000);
    static const uint8_t mac_pool[3][6] = {{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}};
    for (int i = 0; i < PN_MAX_IFACES; i++) {
        pn_iface *f = &t->ifaces[i];
        f->used = pct(60);
        if (pct(30))
            memcpy(f->mac, mac_pool[rn(3)], 6);
        else
            rfill(f->mac, 6);
        f->addr = (uint32_t)rnd64();
        f->mtu = r_mtu();
    }
    uint32_t nflows = rn(cap + 1);
    for (uint32_t k = 0; k < nflows * 2 && t->count < nflows; k++) {
        uint8_t proto = pct(97) ? (pct(50) ? 6 : 17) : (uint8_t)rnd64();
        int64_t s = pn_insert(t, proto, r_addr(), r_port(), r_addr(), r_port(), r_addr(), r_port(), r_addr(),
                              r_port(), (uint8_t)rn(4), pct(70), FP.now + (pct(10) ? 0.0 : rdbl(-100, 1000)));
        if (s < 0)
            continue;
        pn_entry *e = &t->e[s];
        if (pct(85))
            e->flags |= PN_F_FAST;
        e->in_if = (uint8_t)(pct(92) ? (uint32_t)used_iface(t) : rn(256));
        e->out_if = (uint8_t)(pct(92) ? (uint32_t)used_iface(t) : rn(256));
        rfill(e->client_mac, 6);
        rfill(e->rs_mac, 6);
        e->dest_id = (uint16_t)rn(ndests + 3);
        e->toa_kind = pct(50) ? 0 : pct(50) ? 254 : (uint8_t)rnd64();
    }
}

static int pick_flow(const pn_table *t, tuple5 *k, uint8_t *toa_kind)
{
    uint32_t used[64], n = 0;
    for (uint32_t s = 0; s < t->hw; s++)
        if (t->e[s].flags & PN_F_USED)
            used[n++] = s;
    if (!n)
        return 0;
    const pn_entry *e = &t->e[used[rn(n)]];
    k->proto = e->proto;
    if ((e->flags & PN_F_HAS_OUT) && pct(40))
        k->src = e->daddr, k->sport = e->dport, k->dst = e->laddr, k->dport = e->lport;
    else
        k->src = e->caddr, k->sport = e->cport, k->dst = e->vaddr, k->dport = e->vport;
    *toa_kind = e->toa_kind;
    return 1;
}

static void tcp_options(uint8_t *o, size_t n, uint8_t toa)
{
    if (!toa)
        toa = (uint8_t)(2 + rn(254));
    memset(o, 1, n); /* NOPs */
    switch (rn(6)) {
    case 0: /* the TOA option, after a NOP or two */
        if (n >= 10) {
            size_t at = rn(3);
            o[at] = toa, o[at + 1] = 8;
            rfill(o + at + 2, 6);
        }
        break;
    case 1: /* MSS then EOL then a TOA-kind option past the end of the list */
        if (n >= 12) {
            o[0] = 2, o[1] = 4, o[2] = 0x05, o[3] = 0xB4, o[4] = 0, o[5] = toa, o[6] = 6;
        }
        break;
    case 2: /* a malformed length before it */
        if (n >= 8) {
            o[0] = 8, o[1] = (uint8_t)rn(2), o[2] = toa, o[3] = 4;
        }
        break;
    case 3: /* the option runs past the header */
        if (n >= 4) {
            o[n - 2] = toa, o[n - 1] = (uint8_t)(3 + rn(10));
        }
        break;
    case 4:
        rfill(o, n);
        break;
    default:
        break;
    }
}

/* Recompute the IPv4 header and TCP/UDP checksums wherever the (possibly mutated) frame lets one be. */
void fix_checksums(uint8_t *f, size_t len, int udp_keep_zero)
{
    if (len < ETH + 20)
        return;
    uint8_t *ip = f + ETH;
    size_t ihl = (size_t)(ip[0] & 0x0F) * 4;
    if (ihl < 20 || ETH + ihl > len)
        return;
    put16(ip + 10, 0);
    put16(ip + 10, (uint16_t)~ref_sum(ip, ihl));
    size_t total = get16(ip + 2);
    if (ihl != 20 || total < 20 || ETH + total > len)
        return;
    uint32_t l4len = (uint32_t)total - 20;
    uint8_t *l4 = ip + 20;
    if (ip[9] == 6 && l4len >= 20) {
        put16(l4 + 16, 0);
        put16(l4 + 16, (uint16_t)~oc_add(ref_pseudo(ip, l4len), ref_sum(l4, l4len)));
    } else if (ip[9] == 17 && l4len >= 8 && !(udp_keep_zero && get16(l4 + 6) == 0)) {
        put16(l4 + 6, 0);
        uint16_t c = (uint16_t)~oc_add(ref_pseudo(ip, l4len), ref_sum(l4, l4len));
        put16(l4 + 6, c ? c : 0xFFFF);
    }
}

/* A frame for tuple k, with correct checksums, into a fresh exact-size allocation; *len its length. */
uint8_t *build_frame(const uint8_t dmac[6], const tuple5 *k, uint8_t toa, size_t *len)
{
    int big = pct(1) && pct(5);
    size_t payload = big ? 65000 + rn(536) : pct(30) ? 0 : rn(1500);
    size_t nopt = k->proto == 6 && pct(50) ? 4 * (1 + rn(10)) : 0;
    size_t hl4 = k->proto == 6 ? 20 + nopt : 8;
    size_t l4len = hl4 + payload;
    if (20 + l4len > 65535)
        l4len = 65535 - 20, payload = l4len - hl4;
    size_t total = 20 + l4len;
    size_t pad = pct(20) ? rn(40) : 0;
    size_t n = ETH + total + pad;
    uint8_t *f = exact_alloc(n);
    rfill(f, n);
    memcpy(f, dmac, 6);
    f[12] = 0x08, f[13] = 0x00;
    uint8_t *ip = f + ETH;
    ip[0] = 0x45;
    put16(ip + 2, (uint32_t)total);
    put16(ip + 6, pct(60) ? 0x4000 : pct(90) ? 0 : 0x8000);
    ip[8] = (uint8_t)(pct(90) ? 2 + rn(254) : rn(3));
    ip[9] = k->proto;
    memcpy(ip + 12, &k->src, 4);
    memcpy(ip + 16, &k->dst, 4);
    uint8_t *l4 = ip + 20;
    memcpy(l4, &k->sport, 2);
    memcpy(l4 + 2, &k->dport, 2);
    int udp_zero = 0;
    if (k->proto == 6) {
        l4[12] = (uint8_t)((hl4 / 4) << 4);
        l4[13] = pct(85) ? (uint8_t)(0x10 | (pct(50) ? 0x08 : 0)) : (uint8_t)rnd64();
        tcp_options(l4 + 20, nopt, toa);
    } else if (k->proto == 17) {
        put16(l4 + 4, (uint32_t)l4len);
        udp_zero = pct(20);
        put16(l4 + 6, 0);
    }
    fix_checksums(f, n, udp_zero);
    *len = n;
    return f;
}

void mutate(uint8_t *f, size_t *len)
{
    uint8_t *ip = f + ETH;
    int nm = 1 + (int)rn(3);
    for (int i = 0; i < nm; i++) {
        switch (rn(14)) {
        case 0: if (*len) f[rn((uint32_t)*len)] ^= (uint8_t)(1 + rn(255)); break;
        case 1: if (*len > ETH + 8) ip[8] = (uint8_t)rn(3); break;
        case 2: if (*len > ETH) ip[0] = (uint8_t)((pct(80) ? 0x40 : (uint8_t)rnd64() & 0xF0) | rn(16)); break;
        case 3: if (*len > ETH + 7) put16(ip + 6, (uint32_t)rnd64() & (pct(50) ? 0x2000 : 0xFFFF)); break;
        case 4: if (*len > ETH + 3) put16(ip + 2, pct(50) ? get16(ip + 2) + rn(9) - 4 : (uint32_t)rnd64()); break;
        case 5: if (*len > ETH + 9) ip[9] = (uint8_t)(pct(50) ? (pct(50) ? 6 : 17) : rnd64()); break;
        case 6: if (*len > ETH + 20 + 13) ip[20 + 12] = (uint8_t)(rn(16) << 4); break;
        case 7: if (*len > ETH + 20 + 13) ip[20 + 13] = (uint8_t)rnd64(); break;
        case 8: if (*len > ETH + 20 + 5) put16(ip + 20 + 4, get16(ip + 20 + 4) + rn(5) - 2); break;
        case 9: if (*len > ETH + 20 + 7) put16(ip + 20 + 6, 0); break;
        case 10: *len = rn((uint32_t)*len + 1); break; /* truncated */
        case 11: if (*len > 13) f[12 + rn(2)] ^= (uint8_t)(1 + rn(255)); break;
        case 12: if (*len > 5) f[rn(6)] ^= (uint8_t)(1 + rn(255)); break;
        default: if (*len > ETH + 11) put16(ip + 10, (uint32_t)rnd64()); break;
        }
    }
    if (pct(60))
        fix_checksums(f, *len, 1);
}

/* As the local stack hands over a CHECKSUM_PARTIAL segment: the L4 checksum field holds the pseudo-header
 * sum only (or, sometimes, anything at all). */
void partialize(uint8_t *f, size_t len)
{
    if (len < 34)
        return;
    size_t ihl = (size_t)(f[14] & 15) * 4, total = get16(f + 16);
    size_t at = f[23] == 6 ? 16 : 6;
    if (ihl < 20 || total < ihl || 14 + total > len || 14 + ihl + at + 2 > len)
        return;
    uint32_t ps = oc_add(oc_add(ref_sum(f + 26, 8), f[23]), (uint32_t)(total - ihl));
    put16(f + 14 + ihl + at, pct(70) ? ps : (uint32_t)rnd64());
}

/* Set the 16-bit word at w so that the one's-complement sum s (which includes the word's current value)
 * becomes 0xFFFF: the checksum computed over it is then 0, which UDP must send as 0xFFFF (RFC 768). */
void aim_word(uint8_t *w, uint32_t s)
{
    uint32_t s0 = oc_add(s, (uint16_t)~get16(w)); /* s without the word */
    put16(w, 0xFFFF - s0);
}

/* Make a UDP frame whose forwarded form (as the reference rewrites it) has a computed L4 checksum of 0. */
static void aim_udp_zero(const pn_table *t, uint8_t *f, size_t len, int ifindex)
{
    if (len < ETH + 30 || f[ETH + 9] != 17 || f[ETH] != 0x45)
        return;
    uint32_t total = get16(f + ETH + 2);
    if (total < 30 || ETH + total > len || get16(f + ETH + 26) == 0)
        return;
    uint8_t *tmp = exact_alloc(20 + len), *skip = exact_alloc(20 + len);
    memset(tmp, 0, 20);
    memcpy(tmp + 20, f, len);
    refout r = ref_classify(t, tmp, 20 + len, 20, (uint32_t)len, ifindex, FP.now);
    if (r.reason < 0) {
        uint32_t at;
        uint32_t noff = ref_forward(t, &r, tmp, skip, 20, &at);
        uint8_t *ip = tmp + noff + ETH + (r.encap ? 20 : 0);
        put16(ip + 26, 0);
        uint32_t s = oc_add(ref_pseudo(ip, total - 20), ref_sum(ip + 20, total - 20));
        aim_word(f + ETH + 28, s); /* the first payload word: not rewritten, so it moves both sums alike */
        fix_checksums(f, len, 0);
    }
    free(tmp);
    free(skip);
}

/* A fresh frame: mostly one of the table's flows in either direction, else a random tuple. */
frame make_frame(const pn_table *t, int ifindex)
{
    tuple5 k;
    uint8_t toa = 0;
    if (!(pct(85) && pick_flow(t, &k, &toa))) {
        k.proto = r_proto(), k.src = r_addr(), k.dst = r_addr(), k.sport = r_port(), k.dport = r_port();
    }
    uint8_t dmac[6];
    if (ifindex >= 0 && ifindex < PN_MAX_IFACES && pct(92))
        memcpy(dmac, t->ifaces[ifindex].mac, 6);
    else
        rfill(dmac, 6);
    frame fr;
    fr.data = build_frame(dmac, &k, toa, &fr.len);
    if (k.proto == 17 && pct(10))
        aim_udp_zero(t, fr.data, fr.len, ifindex);
    fr.partial = pct(15);
    if (fr.partial && pct(90))
        partialize(fr.data, fr.len);
    if (pct(25))
        mutate(fr.data, &fr.len);
    return fr;
}

