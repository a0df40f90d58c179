/* The offload pieces under the sanitizers (see the top of harness.c): random virtio-net headers read into
 * descriptors (pn_vnet_to_desc) and written back (pn_desc_to_vnet), random GSO super-frames cut up
 * (pn_gso_segment) with every segment checked against the reference checksum, and the fast path's GSO rules
 * (passed whole to an offload port with its partial checksum kept right, punted otherwise). */
#include <stdlib.h>
#include <string.h>
#include "harness.h"

static uint16_t g16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void p16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

/* A TCP or UDP super-frame of payload bytes, partial checksum (the pseudo-header sum) as the kernel hands it. */
static uint8_t *super_frame(int udp, size_t payload, size_t *len)
{
    size_t hl = udp ? 8 : 20 + 4 * rn(3), total = 20 + hl + payload;
    uint8_t *f = exact_alloc(ETH + total);
    rfill(f, ETH + total);
    f[12] = 8, f[13] = 0;
    uint8_t *ip = f + ETH, *l4 = ip + 20;
    ip[0] = 0x45;
    p16(ip + 2, (uint32_t)total);
    p16(ip + 6, 0x4000);
    ip[8] = 64, ip[9] = udp ? 17 : 6;
    ip[10] = ip[11] = 0;
    p16(ip + 10, (uint16_t)~ref_sum(ip, 20));
    if (udp) {
        p16(l4 + 4, (uint32_t)(hl + payload));
    } else {
        l4[12] = (uint8_t)((hl / 4) << 4);
        l4[13] = (uint8_t)(0x10 | (pct(30) ? 0x08 : 0) | (pct(20) ? 0x01 : 0) | (pct(20) ? 0x80 : 0));
    }
    size_t co = udp ? 6 : 16;
    p16(l4 + co, ref_pseudo(ip, (uint32_t)(hl + payload)));
    *len = ETH + total;
    return f;
}

static void check_segment_once(void)
{
    g_phase = "gso-segment";
    int udp = pct(30);
    size_t payload = rn(9000), len;
    uint8_t *f = super_frame(udp, payload, &len);
    pn_desc d = {0, (uint32_t)len, 0, 0, (uint16_t)(1 + rn(1500)), udp ? PN_GSO_UDP_L4 : PN_GSO_TCPV4, PN_CSUM_PARTIAL};
    if (pct(5))
        d.gso_type = (uint8_t)rn(256), d.gso_size = (uint16_t)rn(3);
    uint32_t maxsegs = (uint32_t)(payload / (d.gso_size ? d.gso_size : 1) + 1);
    size_t outlen = len + (size_t)maxsegs * 80;
    if (pct(5))
        outlen = rn((uint32_t)outlen); /* too little room: refused, never written past */
    uint8_t *out = exact_alloc(outlen ? outlen : 1);
    uint32_t *lens = (uint32_t *)xmalloc(maxsegs * sizeof(uint32_t));
    int n = pn_gso_segment(f, len, &d, out, outlen, lens, maxsegs);
    uint8_t g = d.gso_type & (uint8_t)~PN_GSO_ECN;
    int ok_type = d.gso_size && ((g == PN_GSO_TCPV4 && !udp) || (g == PN_GSO_UDP_L4 && udp));
    CHECK(n < 0 || ok_type, "segmented a super-frame of type %u", d.gso_type);
    size_t at = 0, got = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *s = out + at, *ip = s + ETH;
        size_t hl = udp ? 8 : (size_t)(ip[20 + 12] >> 4) * 4, pl = lens[i] - ETH - 20 - hl;
        CHECK(g16(ip + 2) == lens[i] - ETH, "segment %d: IP total length", i);
        CHECK(ref_sum(ip, 20) == 0xFFFF, "segment %d: IP header checksum", i);
        uint32_t s_all = oc_add(ref_pseudo(ip, (uint32_t)(lens[i] - ETH - 20)), ref_sum(ip + 20, lens[i] - ETH - 20));
        CHECK(s_all == 0xFFFF, "segment %d: L4 checksum", i);
        CHECK(pl <= d.gso_size && memcmp(s + ETH + 20 + hl, f + ETH + 20 + hl + got, pl) == 0, "segment %d payload", i);
        got += pl;
        at += lens[i];
    }
    CHECK(n < 0 || got == payload, "segments carry %zu of %zu payload bytes", got, payload);
    free(lens);
    free(out);
    free(f);
}

static void check_vnet_once(void)
{
    g_phase = "vnet";
    size_t len = rn(200);
    uint8_t *f = exact_alloc(len ? len : 1);
    rfill(f, len);
    if (len >= 34 && pct(60))
        f[12] = 8, f[13] = 0, f[14] = (uint8_t)(0x45 + (pct(10) ? rn(3) : 0)), f[23] = pct(50) ? 6 : 17;
    pn_vnet_hdr h = {(uint8_t)rn(4), (uint8_t)(pct(50) ? 0 : rn(6)), (uint16_t)rn(80), (uint16_t)rn(2000),
                     (uint16_t)(pct(50) ? 34 : rn(300)), (uint16_t)(pct(50) ? 16 : rn(20))};
    pn_desc d;
    memset(&d, 0xAB, sizeof(d));
    int r = pn_vnet_to_desc(&h, f, len, &d);
    CHECK(r == 0 || r == -1, "pn_vnet_to_desc returned %d", r);
    if (r == 0) {
        CHECK(!(d.flags & ~(PN_CSUM_PARTIAL | PN_CSUM_VALID)), "flags %u", d.flags);
        CHECK(d.gso_type == 0 || (d.flags & PN_CSUM_PARTIAL), "GSO without a partial checksum accepted");
        pn_vnet_hdr back;
        pn_desc_to_vnet(&d, f, len, &back);
        CHECK(!(d.flags & PN_CSUM_PARTIAL) || (back.flags == PN_VNET_F_NEEDS_CSUM && back.csum_start == h.csum_start &&
                                                 back.csum_offset == h.csum_offset && back.gso_type == d.gso_type),
              "a partial frame's header does not come back");
    }
    free(f);
}

/* The fast path's GSO rules on one NAT flow: whole to an offload port, punted to one without. */
static void check_gso_fastpath(void)
{
    g_phase = "gso-fastpath";
    for (int offload = 0; offload < 2; offload++) {
        pn_table t;
        uint8_t key[16] = {0};
        CHECK(pn_table_init(&t, 4, key, 2) == 0, "table");
        const uint8_t mac_in[6] = {2, 0, 0, 0, 0, 1}, mac_out[6] = {2, 0, 0, 0, 0, 2};
        t.ifaces[0].used = 1, memcpy(t.ifaces[0].mac, mac_in, 6), t.ifaces[0].mtu = 1500;
        t.ifaces[1].used = 1, memcpy(t.ifaces[1].mac, mac_out, 6), t.ifaces[1].mtu = 1500;
        t.ifaces[1].offload = (uint8_t)offload;
        t.tcp_timeout = t.udp_timeout = 100;
        size_t len;
        uint8_t *f = super_frame(0, 20000, &len);
        memcpy(f, mac_in, 6);
        uint32_t c, v, rs;
        memcpy(&c, f + ETH + 12, 4), memcpy(&v, f + ETH + 16, 4);
        rs = v ^ 0x01000000u;
        uint16_t cp, vp, rp = 0x5000;
        memcpy(&cp, f + ETH + 20, 2), memcpy(&vp, f + ETH + 22, 2);
        f[ETH + 33] = 0x10; /* ACK only */
        int64_t s = pn_insert(&t, 6, c, cp, v, vp, c, cp, rs, rp, PN_NAT, 1, 1e9);
        CHECK(s >= 0, "insert");
        pn_entry *e = &t.e[s];
        e->flags |= PN_F_FAST, e->in_if = 0, e->out_if = 1;
        pn_desc d = {0, (uint32_t)len, 0, 0, 1448, PN_GSO_TCPV4, PN_CSUM_PARTIAL};
        pn_process(&t, f, len, &d, 1, 0, 1.0);
        if (!offload) {
            CHECK(d.verdict == -1 && d.reason == PN_PUNT_GSO, "GSO to a port without offload: %d/%u", d.verdict,
                  d.reason);
            st_reason[PN_PUNT_GSO]++;
        } else {
            CHECK(d.verdict == 1 && d.gso_size == 1448 && (d.flags & PN_CSUM_PARTIAL), "GSO passed whole");
            uint8_t *ip = f + ETH;
            CHECK(memcmp(ip + 16, &rs, 4) == 0 && memcmp(ip + 22, &rp, 2) == 0, "rewritten");
            /* the partial checksum is the new pseudo-header sum (in one's complement: 0 and 0xFFFF alike) */
            uint32_t want = ref_pseudo(ip, (uint32_t)(len - ETH - 20)), got = g16(ip + 20 + 16);
            CHECK(want % 0xFFFF == got % 0xFFFF, "partial checksum %04x, pseudo-header sum %04x", got, want);
            CHECK(ref_sum(ip, 20) == 0xFFFF, "IP header checksum");
        }
        free(f);
        pn_table_free(&t);
    }
}

static const uint8_t mac_in[6] = {2, 0, 0, 0, 0, 1}, mac_out[6] = {2, 0, 0, 0, 0, 2};

/* A table of 4 flows with ports 0 (mac_in) and 1 (mac_out), MTU 1500. */
static void two_port_table(pn_table *t)
{
    uint8_t key[16] = {0};
    CHECK(pn_table_init(t, 4, key, 2) == 0, "table");
    t->ifaces[0].used = 1, memcpy(t->ifaces[0].mac, mac_in, 6), t->ifaces[0].mtu = 1500;
    t->ifaces[1].used = 1, memcpy(t->ifaces[1].mac, mac_out, 6), t->ifaces[1].mtu = 1500;
}

/* TCP state changes on the fast path (tcp_track): a FIN moves the entry and writes an event; with the event
 * buffer full, a segment that would change state is punted instead (never written past the end). */
static void check_tcp_track(void)
{
    g_phase = "tcp-track";
    pn_table t;
    two_port_table(&t);
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 4; c++)
            for (int st = 0; st < PN_TCP_NSTATES; st++)
                t.tcp_next[a][c][st] = (uint8_t)((st + c + 1) % PN_TCP_NSTATES); /* always a change */
    for (int st = 0; st < PN_TCP_NSTATES; st++)
        t.tcp_to[st] = 10.0 + st;
    t.tcp_track = 1;
    size_t len;
    uint8_t *f = super_frame(0, rn(100), &len);
    memcpy(f, mac_in, 6);
    uint32_t c, v;
    uint16_t cp, vp;
    memcpy(&c, f + ETH + 12, 4), memcpy(&v, f + ETH + 16, 4), memcpy(&cp, f + ETH + 20, 2), memcpy(&vp, f + ETH + 22, 2);
    int64_t s = pn_insert(&t, 6, c, cp, v, vp, c, cp, v ^ 1u, vp, PN_NAT, 1, 1e9);
    CHECK(s >= 0, "insert");
    t.e[s].flags |= PN_F_FAST, t.e[s].in_if = 0, t.e[s].out_if = 1, t.e[s].state = PN_TCP_ES;
    /* a whole checksum, as the fast path verifies it */
    uint8_t *ip = f + ETH, *l4 = ip + 20;
    l4[13] = 0x11; /* FIN|ACK */
    l4[16] = l4[17] = 0;
    size_t l4len = len - ETH - 20;
    p16(l4 + 16, (uint16_t)~oc_add(ref_pseudo(ip, (uint32_t)l4len), ref_sum(l4, l4len)));
    uint8_t *copy = exact_alloc(len);
    for (uint32_t k = 0; k <= PN_EVENTS_MAX; k++) {
        memcpy(copy, f, len);
        pn_desc d = {0, (uint32_t)len, 0, 0, 0, 0, 0};
        uint8_t before = t.e[s].state;
        pn_process(&t, copy, len, &d, 1, 0, 1.0);
        if (k < PN_EVENTS_MAX) {
            CHECK(d.verdict == 1 && t.nevents == k + 1 && t.e[s].state != before, "FIN %u: forwarded, one event", k);
            CHECK((t.events[k] >> 8) == (uint32_t)s && (t.events[k] & 0x7F) == t.e[s].state, "event %u", k);
        } else {
            CHECK(d.verdict == -1 && d.reason == PN_PUNT_TCP_FLAGS && t.e[s].state == before, "events full: punted");
        }
    }
    free(copy);
    free(f);
    pn_table_free(&t);
}

/* FULLNAT's TOA into the handshake's last ACK: the headers move 8 bytes into the headroom, exactly to the
 * buffer's start here (an exact allocation: one byte less of headroom and the frame is punted untouched). */
static void check_toa(void)
{
    g_phase = "toa";
    pn_table t;
    two_port_table(&t);
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 4; c++)
            for (int st = 0; st < PN_TCP_NSTATES; st++)
                t.tcp_next[a][c][st] = PN_TCP_ES;
    t.tcp_track = 1;
    size_t len;
    uint8_t *f = super_frame(0, rn(100), &len);
    memcpy(f, mac_in, 6);
    uint8_t *ip = f + ETH, *l4 = ip + 20;
    size_t doff = (size_t)(l4[12] >> 4) * 4, l4len = len - ETH - 20;
    memset(l4 + 20, 1, doff - 20); /* NOPs: clean options */
    l4[13] = 0x10;                 /* ACK */
    l4[16] = l4[17] = 0;
    p16(l4 + 16, (uint16_t)~oc_add(ref_pseudo(ip, (uint32_t)l4len), ref_sum(l4, l4len)));
    uint32_t c, v;
    uint16_t cp, vp;
    memcpy(&c, ip + 12, 4), memcpy(&v, ip + 16, 4), memcpy(&cp, l4, 2), memcpy(&vp, l4 + 2, 2);
    for (size_t room = PN_TOA_LEN - 1; room <= PN_TOA_LEN; room++) {
        int64_t s = pn_insert(&t, 6, c, cp, v, vp, v ^ 2u, cp, v ^ 1u, vp, PN_FULLNAT, 1, 1e9);
        CHECK(s >= 0, "insert");
        pn_entry *e = &t.e[s];
        e->flags |= PN_F_FAST | PN_F_TOA, e->in_if = 0, e->out_if = 1, e->state = PN_TCP_SR, e->toa_kind = 254;
        uint8_t *b = exact_alloc(room + len);
        memcpy(b + room, f, len);
        pn_desc d = {(uint32_t)room, (uint32_t)len, 0, 0, 0, 0, 0};
        t.nevents = 0;
        pn_process(&t, b, room + len, &d, 1, 0, 1.0);
        if (room < PN_TOA_LEN) {
            CHECK(d.verdict == -1 && d.reason == PN_PUNT_TOA && (e->flags & PN_F_TOA), "no headroom: punted");
            CHECK(memcmp(b + room, f, len) == 0, "punted untouched");
        } else {
            CHECK(d.verdict == 1 && d.off == 0 && d.len == len + PN_TOA_LEN && !(e->flags & PN_F_TOA), "TOA in");
            CHECK(t.nevents == 1 && (t.events[0] & PN_EV_TOA), "TOA event");
            CHECK(b[ETH + 20 + 20] == 254 && ref_sum(b + ETH, 20) == 0xFFFF, "TOA first, IP checksum");
        }
        free(b);
        pn_remove(&t, s);
    }
    free(f);
    pn_table_free(&t);
}

void check_offload_once(void)
{
    uint32_t r = rn(5);
    if (r == 4) {
        check_toa();
        return;
    }
    if (r == 3) {
        check_tcp_track();
        return;
    }
    if (r == 0)
        check_segment_once();
    else if (r == 1)
        check_vnet_once();
    else
        check_gso_fastpath();
}
